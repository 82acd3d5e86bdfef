'use strict';

// What each trigger's items look like, for the Zap editor before any real data: the shapes of
// chatbundle's payloads (see the README's Windows and bundles, and Delivery), with made-up data.

const chat = {
  id: 42,
  chat_id: '972540000000@c.us',
  full_name: 'John Doe',
  phone: '+972540000000',
  is_group: false,
  is_new_chat: true,
  responsible_name: 'Amnon',
  responsible_email: 'amnon@acme.example',
  chat_url: 'https://chatbundle.example.com/c/SAMPLE',
  can_reply: true,
};

const account = { full_name: 'Acme Support', email: 'support@acme.example', phone: '+972500000000' };

const message = {
  direction: 'received',
  timestamp: '2026-12-07T09:25:29+0000',
  message_id: 'wamid.SAMPLE',
  sender: { full_name: 'John Doe', phone: '+972540000000' },
  recipient: { full_name: 'Acme Support', phone: '+972500000000' },
  text: 'Hello, is my order on its way?',
};

module.exports = {
  bundle: {
    id: 'b_SAMPLE-1',
    bundle_id: 'b_SAMPLE',
    part: 1,
    parts: 1,
    channel: 'whatsapp',
    window_start: '2026-12-07T09:00:00+0000',
    window_end: '2026-12-07T10:00:00+0000',
    whatsapp_account: account,
    chat,
    messages: [message],
    first_message_timestamp: '2026-12-07T09:25:29+0000',
    last_message_timestamp: '2026-12-07T09:25:29+0000',
    message_count: 1,
    aggregation:
      "from John Doe on 2026-12-07 11:25: Hello, is my order on its way?<br/>Click <a href='https://chatbundle.example.com/c/SAMPLE'>here</a> to open the conversation",
    aggregation_text:
      'from John Doe on 2026-12-07 11:25: Hello, is my order on its way?\nOpen the conversation: https://chatbundle.example.com/c/SAMPLE',
  },
  message: {
    id: 'wamid.SAMPLE',
    channel: 'whatsapp',
    whatsapp_account: account,
    chat,
    message,
  },
  session: {
    id: 'SAMPLE-ENDED-1765099529000',
    payload: {
      currentAssigneeId: 'amnon@acme.example',
      sessionStatus: 'ENDED',
      replyStatus: 'SESSION_ENDED',
      sessionOldStatus: 'OPEN',
      sessionId: 'SAMPLE',
      messagesCount: '4',
      assigneeType: 'AGENT',
      channelId: null,
    },
    eventTime: '1765099529000',
    eventType: 'IM_Session_Status',
    orgId: 'ws_SAMPLE',
    chat,
  },
};

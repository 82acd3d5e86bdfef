'use strict';

// Answers a chat through its own channel (WhatsApp, WeChat, Chatwoot, or the workspace's
// reply_url): POST /api/v1/chats/{id}/messages. chatbundle stores the reply at once and sends it
// durably; the result says where it stands. The channel's rules come first: outside WhatsApp's
// 24 hours only a template may go, and the error says so.

const { base } = require('../lib/api');

module.exports = {
  key: 'send_reply',
  noun: 'Reply',
  display: {
    label: 'Send a Reply',
    description: 'Answers a chat through the channel it came from.',
  },
  operation: {
    inputFields: [
      {
        key: 'chat_id',
        label: 'Chat ID',
        type: 'integer',
        required: true,
        helpText: "The trigger's **Chat ID** (`chat.id` of a bundle, a message or a session change).",
      },
      { key: 'text', label: 'Text', type: 'text', required: false, helpText: 'Your answer. Leave it empty to send a template.' },
      {
        key: 'template_name',
        label: 'Template',
        required: false,
        helpText:
          'An approved WhatsApp template, for a chat whose 24 hours have passed (Twilio: its Content SID, `HX…`).',
      },
      { key: 'template_language', label: 'Template language', required: false, default: 'en_US' },
      { key: 'template_parameters', label: 'Template parameters', required: false, list: true },
      {
        key: 'idempotency_key',
        label: 'Idempotency key',
        required: false,
        helpText:
          "Something unique to what you answer, e.g. the trigger's Message ID or Bundle ID: if the Zap runs twice, the chat is answered once.",
      },
    ],
    perform: async (z, bundle) => {
      const input = bundle.inputData;
      const body = {};
      if (input.template_name) {
        body.template = {
          name: input.template_name,
          language: input.template_language || 'en_US',
          parameters: input.template_parameters || [],
        };
      } else {
        body.text = input.text;
      }
      if (input.idempotency_key) {
        body.idempotency_key = input.idempotency_key;
      }
      const response = await z.request({
        method: 'POST',
        url: `${base(bundle)}/api/v1/chats/${encodeURIComponent(input.chat_id)}/messages`,
        body,
      });
      return response.data;
    },
    sample: {
      message_id: 'cb-SAMPLE',
      status: 'queued',
      vendor_id: null,
      error: null,
      attempts: 0,
    },
    outputFields: [
      { key: 'message_id', label: 'Reply ID' },
      { key: 'status', label: 'Status (queued, sent or failed)' },
    ],
  },
};

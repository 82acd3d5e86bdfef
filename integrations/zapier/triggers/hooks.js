'use strict';

// The three triggers are REST hooks: turning a Zap on creates a chatbundle webhook that posts to
// the Zap's own URL (with the events and granularity the trigger stands for), turning it off
// deletes it. Each payload chatbundle sends becomes one item; a session change is an array of
// events, each its own item.

const { base, explainErrors, workspace } = require('../lib/api');
const samples = require('./samples');

// Zapier de-duplicates items on `id`. A test send repeats the ids of what it shows, so its items
// get ids of their own: a real delivery that follows is still taken.
const withIds = (items, idOf) =>
  items.map((item) => {
    const id = idOf(item);
    return { ...item, id: item.test ? `test-${id}-${Date.now()}` : id };
  });

const asItems = (body) => (Array.isArray(body) ? body : body ? [body] : []);

const mediaField = {
  key: 'media',
  label: 'Photos and files',
  required: false,
  choices: {
    skip: 'Leave them out (a caption still comes, as text)',
    placeholder: 'Include them: the caption, or a placeholder such as [image], and the attachments',
    link: 'Include them, each file with a download link a Zap can open',
  },
  default: 'skip',
};

const hookTrigger = ({ key, noun, label, description, events, granularity, inputFields, idOf, sample, outputFields }) => {
  const settings = (bundle) => ({
    events,
    granularity: granularity || bundle.inputData.granularity,
    media: events.includes('messages') ? bundle.inputData.media || 'skip' : undefined,
  });
  return {
    key,
    noun,
    display: { label, description },
    operation: {
      type: 'hook',
      inputFields,
      performSubscribe: async (z, bundle) => {
        const ws = await workspace(z, bundle);
        const response = await z.request({
          method: 'POST',
          url: `${base(bundle)}/api/v1/workspaces/${ws.id}/webhooks`,
          body: { url: bundle.targetUrl, ...settings(bundle) },
        });
        // Kept by Zapier as bundle.subscribeData: the webhook to delete later.
        return { id: response.data.id, workspace_id: ws.id };
      },
      performUnsubscribe: async (z, bundle) => {
        const response = await z.request({
          method: 'DELETE',
          url: `${base(bundle)}/api/v1/webhooks/${encodeURIComponent(bundle.subscribeData.id)}`,
          skipThrowForStatus: true,
        });
        // Already gone (deleted on the workspace's page) is as good as deleted now.
        if (response.status !== 404) {
          explainErrors({ ...response, skipThrowForStatus: false }, z);
        }
        return { id: bundle.subscribeData.id, deleted: true };
      },
      perform: async (z, bundle) => withIds(asItems(bundle.cleanedRequest), idOf),
      // What the workspace's most recently active chat would send now (a made-up sample when
      // it has no chat yet), rendered by the daemon exactly as a delivery would be.
      performList: async (z, bundle) => {
        const ws = await workspace(z, bundle);
        const { events: wanted, granularity: every, media } = settings(bundle);
        const params = { events: wanted.join(','), granularity: every };
        if (media) {
          params.media = media;
        }
        const response = await z.request({ url: `${base(bundle)}/api/v1/workspaces/${ws.id}/sample`, params });
        return asItems(response.data.payload).map((item) => ({ ...item, id: idOf(item) }));
      },
      sample,
      outputFields,
    },
  };
};

const chatFields = [
  { key: 'chat__id', label: 'Chat ID (to answer it)', type: 'integer' },
  { key: 'chat__full_name', label: 'Chat name' },
  { key: 'chat__phone', label: 'Chat phone' },
  { key: 'chat__chat_url', label: 'Transcript link' },
  { key: 'chat__is_new_chat', label: 'Is a new chat', type: 'boolean' },
  { key: 'chat__responsible_email', label: 'Owner e-mail' },
  { key: 'channel', label: 'Channel' },
];

const newBundle = hookTrigger({
  key: 'new_bundle',
  noun: 'Bundle',
  label: 'New Bundle',
  description: "Triggers once per chat per window, with the window's messages and a ready-to-paste note.",
  events: ['messages'],
  inputFields: [
    {
      key: 'granularity',
      label: 'Window',
      required: true,
      choices: {
        '1h': 'Every hour',
        '6h': 'Every 6 hours',
        '12h': 'Every 12 hours',
        '24h': 'Every day',
        conversation: 'When a conversation ends',
      },
      default: '24h',
      helpText: "Windows follow the workspace's time zone.",
    },
    mediaField,
  ],
  idOf: (item) => `${item.bundle_id}-${item.part || 1}`,
  sample: samples.bundle,
  outputFields: [
    { key: 'bundle_id', label: 'Bundle ID' },
    { key: 'aggregation', label: 'Note (HTML)' },
    { key: 'aggregation_text', label: 'Note (text)' },
    { key: 'message_count', label: 'Messages', type: 'integer' },
    { key: 'window_start', label: 'Window start', type: 'datetime' },
    { key: 'window_end', label: 'Window end', type: 'datetime' },
    { key: 'part', label: 'Part', type: 'integer' },
    { key: 'parts', label: 'Parts', type: 'integer' },
    ...chatFields,
  ],
});

const newMessage = hookTrigger({
  key: 'new_message',
  noun: 'Message',
  label: 'New Message',
  description: 'Triggers at once for every message of every chat, received or sent.',
  events: ['messages'],
  granularity: 'none',
  inputFields: [mediaField],
  idOf: (item) => (item.message || {}).message_id,
  sample: samples.message,
  outputFields: [
    { key: 'message__message_id', label: 'Message ID' },
    { key: 'message__direction', label: 'Direction (received or sent)' },
    { key: 'message__text', label: 'Text' },
    { key: 'message__timestamp', label: 'Time', type: 'datetime' },
    { key: 'message__sender__full_name', label: 'Sender name' },
    { key: 'message__sender__phone', label: 'Sender phone' },
    ...chatFields,
  ],
});

const sessionStatusChanged = hookTrigger({
  key: 'session_status_changed',
  noun: 'Session',
  label: 'Session Status Changed',
  description: "Triggers when a chat's session moves: opened, assigned, waiting, ended, or its reply window closed.",
  events: ['session_status'],
  granularity: 'none',
  inputFields: [],
  idOf: (item) => {
    const payload = item.payload || {};
    return `${payload.sessionId}-${payload.sessionStatus}-${item.eventTime}`;
  },
  sample: samples.session,
  outputFields: [
    { key: 'payload__sessionStatus', label: 'Status' },
    { key: 'payload__sessionOldStatus', label: 'Status before' },
    { key: 'payload__replyStatus', label: 'Reply status' },
    { key: 'payload__sessionId', label: 'Session ID' },
    { key: 'payload__currentAssigneeId', label: 'Assignee ID' },
    { key: 'eventTime', label: 'Time (ms since 1970)' },
    ...chatFields,
  ],
});

module.exports = { newBundle, newMessage, sessionStatusChanged };

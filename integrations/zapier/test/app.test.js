'use strict';

// The app against a running chatbundle daemon, through zapier-platform-core's own test tools
// (the app handler's `validate` command and createAppTester, as `zapier test` runs them). The
// Zap's hook URL is a real HTTP server of this test: subscribing must make chatbundle deliver
// there, and what it delivers goes through the trigger's perform as Zapier would pass it.
//
// Needs, from the environment (tests/spine/zapier.rs starts the daemon and sets them):
//   CHATBUNDLE_URL          the daemon's address
//   CHATBUNDLE_API_TOKEN    an admin API token of one workspace
//   CHATBUNDLE_WORKSPACE_ID that workspace, and CHATBUNDLE_INGEST_KEY, its ingest key
//   CHATBUNDLE_REPLY_TEXT   the words to answer with (the harness checks they reach reply_url)

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');

const zapier = require('zapier-platform-core');
const App = require('../index');

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is set (run through tests/spine/zapier.rs)`);
  return value;
};
const daemon = env('CHATBUNDLE_URL');
const workspaceId = env('CHATBUNDLE_WORKSPACE_ID');
const authData = { base_url: `${daemon}/`, api_token: env('CHATBUNDLE_API_TOKEN') };

const appTester = zapier.createAppTester(App);
const BOUND_MS = 10000;

// Polls `check` until it returns something, failing after BOUND_MS.
const eventually = async (what, check) => {
  const deadline = Date.now() + BOUND_MS;
  for (;;) {
    const found = await check();
    if (found !== undefined && found !== null && found !== false) {
      return found;
    }
    assert.ok(Date.now() < deadline, `${what} within ${BOUND_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

// The daemon's API, directly (not through the app), to set up and to check.
const api = async (method, path, body, token = authData.api_token) => {
  const response = await fetch(`${daemon}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
};

const ingest = async (message) => {
  const sent = await api('POST', `/api/v1/workspaces/${workspaceId}/messages`, message, env('CHATBUNDLE_INGEST_KEY'));
  assert.equal(sent.status, 202, JSON.stringify(sent.json));
};

const message = (id, chat, text, direction = 'received') => ({
  message_id: id,
  direction,
  chat: { id: chat, full_name: `Customer ${chat}`, phone: '+5511999990000' },
  text,
});

// A Zap's hook URL: takes what is posted to it, as Zapier's would.
const hookUrl = async () => {
  const received = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      received.push({ headers: request.headers, body: JSON.parse(body) });
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end('{"status": "success"}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/hooks/catch/1/abc/`;
  return { url, received, close: () => new Promise((resolve) => server.close(resolve)) };
};

// Subscribes `trigger` as turning a Zap on does, runs `cause`, and gives back what chatbundle
// delivered (the first payload that `matches`) passed through the trigger's perform; then turns
// the Zap off and checks that the webhook is gone.
const throughHook = async (trigger, inputData, cause, matches, checkWebhook) => {
  const hook = await hookUrl();
  try {
    const subscribeData = await appTester(App.triggers[trigger].operation.performSubscribe, {
      authData,
      inputData,
      targetUrl: hook.url,
    });
    assert.match(subscribeData.id, /^wh_/);
    const webhook = await api('GET', `/api/v1/webhooks/${subscribeData.id}`);
    assert.equal(webhook.status, 200);
    assert.equal(webhook.json.url, hook.url);
    checkWebhook(webhook.json);

    await cause();
    const delivered = await eventually(`a delivery of ${trigger}`, () => hook.received.find((r) => matches(r.body)));
    assert.ok(delivered.headers['webhook-id'], 'delivered signed-ready, with its webhook-id');
    const items = await appTester(App.triggers[trigger].operation.perform, {
      authData,
      inputData,
      cleanedRequest: delivered.body,
      subscribeData,
    });

    const unsubscribed = await appTester(App.triggers[trigger].operation.performUnsubscribe, {
      authData,
      inputData,
      subscribeData,
    });
    assert.equal(unsubscribed.deleted, true);
    assert.equal((await api('GET', `/api/v1/webhooks/${subscribeData.id}`)).status, 404, 'turning the Zap off deletes the webhook');
    // Turning it off twice (the webhook already gone) is not an error.
    await appTester(App.triggers[trigger].operation.performUnsubscribe, { authData, inputData, subscribeData });
    return items;
  } finally {
    await hook.close();
  }
};

test('the app definition is valid for the Zapier platform', async () => {
  const handler = zapier.createAppHandler(App);
  const validated = await handler({ command: 'validate' });
  assert.deepEqual(validated.results, []);
});

test('connecting takes the workspace the token opens, and a wrong token is refused', async () => {
  const connected = await appTester(App.authentication.test, { authData });
  assert.equal(connected.id, workspaceId);
  assert.equal(connected.base_url, daemon, 'the address is kept without its trailing slash');
  await assert.rejects(
    appTester(App.authentication.test, { authData: { ...authData, api_token: 'cbt_wrong0000000000000000000000000000000000' } }),
    /refused the API token/,
  );
});

test('before any chat, each trigger lists a made-up sample in the shape it will receive', async () => {
  for (const [trigger, inputData] of [
    ['new_message', {}],
    ['new_bundle', { granularity: '1h' }],
    ['session_status_changed', {}],
  ]) {
    const items = await appTester(App.triggers[trigger].operation.performList, { authData, inputData });
    assert.equal(items.length, 1, trigger);
    assert.ok(items[0].id, `${trigger}: every item has an id`);
    assert.equal(items[0].test, true, `${trigger}: marked as a test`);
  }
});

test('New Message: a message posted to chatbundle reaches the Zap at once, once, with its chat', async () => {
  const items = await throughHook(
    'new_message',
    { media: 'placeholder' },
    () => ingest(message('zap-m-1', 'zap-chat-1', 'Is my order on its way?')),
    (body) => body.message && body.message.message_id === 'zap-m-1',
    (webhook) => {
      assert.equal(webhook.granularity, 'none');
      assert.deepEqual(webhook.events, ['messages']);
      assert.equal(webhook.media, 'placeholder');
    },
  );
  assert.equal(items.length, 1);
  assert.equal(items[0].id, 'zap-m-1');
  assert.equal(items[0].message.text, 'Is my order on its way?');
  assert.equal(items[0].chat.chat_id, 'zap-chat-1');
  assert.equal(typeof items[0].chat.id, 'number', 'the chat id to answer it with');
  assert.match(items[0].chat.chat_url, /\/c\//);

  // Now that the workspace has a chat, the listed sample is its latest message, rendered now.
  const listed = await appTester(App.triggers.new_message.operation.performList, { authData, inputData: {} });
  assert.equal(listed[0].message.text, 'Is my order on its way?');
  assert.equal(listed[0].test, true);
  assert.equal(listed[0].sample, undefined, 'real data, not made up');
});

test('New Bundle: a chat\'s window, released, reaches the Zap as one bundle with its note', async () => {
  const items = await throughHook(
    'new_bundle',
    { granularity: '1h' },
    async () => {
      await ingest(message('zap-b-1', 'zap-chat-2', 'First question'));
      await ingest(message('zap-b-2', 'zap-chat-2', 'Second question'));
      const flushed = await api('POST', `/api/v1/workspaces/${workspaceId}/flush`);
      assert.ok(flushed.status < 300, JSON.stringify(flushed.json));
    },
    (body) => body.bundle_id && body.chat && body.chat.chat_id === 'zap-chat-2',
    (webhook) => assert.equal(webhook.granularity, '1h'),
  );
  assert.equal(items.length, 1);
  assert.equal(items[0].id, `${items[0].bundle_id}-1`);
  assert.equal(items[0].message_count, 2);
  assert.deepEqual(items[0].messages.map((m) => m.text), ['First question', 'Second question']);
  assert.match(items[0].aggregation, /Second question/);
});

test('Session Status Changed: a new chat\'s first message reaches the Zap as a CREATED session', async () => {
  const items = await throughHook(
    'session_status_changed',
    {},
    () => ingest(message('zap-s-1', 'zap-chat-3', 'Hello?')),
    (body) => Array.isArray(body) && body.some((e) => e.chat && e.chat.chat_id === 'zap-chat-3'),
    (webhook) => assert.deepEqual(webhook.events, ['session_status']),
  );
  assert.ok(items.length >= 1);
  assert.equal(items[0].eventType, 'IM_Session_Status');
  assert.equal(items[0].payload.sessionStatus, 'CREATED');
  assert.ok(items[0].id.startsWith(`${items[0].payload.sessionId}-CREATED-`), items[0].id);
});

test('Send a Reply answers the chat through its channel, once per idempotency key', async () => {
  await ingest(message('zap-r-1', 'zap-chat-4', 'Can you call me?'));
  const chats = await api('GET', `/api/v1/workspaces/${workspaceId}/chats`);
  const chat = chats.json.chats.find((c) => c.chat_id === 'zap-chat-4');
  assert.ok(chat, JSON.stringify(chats.json));
  const inputData = { chat_id: chat.id, text: env('CHATBUNDLE_REPLY_TEXT'), idempotency_key: 'zap-r-1' };
  const queued = await appTester(App.creates.send_reply.operation.perform, { authData, inputData });
  assert.match(queued.message_id, /^cb-/);
  const again = await appTester(App.creates.send_reply.operation.perform, { authData, inputData });
  assert.equal(again.message_id, queued.message_id, 'a Zap that runs twice answers once');
  await eventually('the reply sent', async () => {
    const status = await api('GET', `/api/v1/chats/${chat.id}/messages/${queued.message_id}`);
    return status.json.status === 'sent';
  });

  // chatbundle's own reason, when it refuses.
  await assert.rejects(
    appTester(App.creates.send_reply.operation.perform, { authData, inputData: { chat_id: 999999999, text: 'Hi' } }),
    /chatbundle answered 404/,
  );
});

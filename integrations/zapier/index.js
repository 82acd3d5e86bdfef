'use strict';

// chatbundle for Zapier: its bundles, messages and session changes as instant triggers (REST
// hooks: a Zap that is turned on owns a chatbundle webhook), and an action that answers a chat.

const authentication = require('./lib/authentication');
const { addToken, explainErrors } = require('./lib/api');
const { newBundle, newMessage, sessionStatusChanged } = require('./triggers/hooks');
const sendReply = require('./creates/send_reply');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
  authentication,
  beforeRequest: [addToken],
  afterResponse: [explainErrors],
  triggers: {
    [newBundle.key]: newBundle,
    [newMessage.key]: newMessage,
    [sessionStatusChanged.key]: sessionStatusChanged,
  },
  creates: {
    [sendReply.key]: sendReply,
  },
};

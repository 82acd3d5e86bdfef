'use strict';

const { base, workspace } = require('./api');

// A connection is a daemon's public address and an API token of one of its workspaces.
module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'base_url',
      label: 'chatbundle address',
      required: true,
      type: 'string',
      helpText: "The daemon's public address (its `public_url`), e.g. `https://chatbundle.example.com`.",
    },
    {
      key: 'api_token',
      label: 'API token',
      required: true,
      type: 'password',
      helpText:
        "An API token of your workspace with the role **admin** (`cbt_…`): on the workspace's page " +
        'under API tokens, or from its admin. It is shown once when it is made.',
    },
  ],
  test: async (z, bundle) => {
    const found = await workspace(z, bundle);
    return { id: found.id, name: found.name, base_url: base(bundle) };
  },
  connectionLabel: '{{name}}',
};

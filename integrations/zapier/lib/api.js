'use strict';

// How the app talks to a chatbundle daemon: its base URL and a workspace API token, from the
// connection; every error as chatbundle words it ({"error": {"code", "detail"}}).

const base = (bundle) => String(bundle.authData.base_url || '').replace(/\/+$/, '');

// Adds the workspace API token to every request the app makes.
const addToken = (request, z, bundle) => {
  if (bundle.authData && bundle.authData.api_token) {
    request.headers = request.headers || {};
    request.headers.Authorization = `Bearer ${bundle.authData.api_token}`;
  }
  return request;
};

// Stops on an answer that is not a 2xx, with chatbundle's own code and words. Requests that
// expect a status of their own (a 404 on unsubscribe) say so with skipThrowForStatus.
const explainErrors = (response, z) => {
  if (response.skipThrowForStatus || response.status < 400) {
    return response;
  }
  let code = `http_${response.status}`;
  let detail = response.content;
  try {
    const error = JSON.parse(response.content).error || {};
    code = error.code || code;
    detail = error.detail || detail;
  } catch (e) {
    // Not chatbundle's JSON (a proxy's page): its text as it is.
  }
  if (response.status === 401) {
    throw new z.errors.RefreshAuthError(`chatbundle refused the API token: ${detail}`);
  }
  throw new z.errors.Error(`chatbundle answered ${response.status}: ${detail}`, code, response.status);
};

// The workspace the token opens. A workspace API token opens exactly one; the operator's admin
// token opens them all, and is not what a Zap should hold.
const workspace = async (z, bundle) => {
  const response = await z.request({ url: `${base(bundle)}/api/v1/workspaces` });
  const workspaces = response.data.workspaces || [];
  if (workspaces.length !== 1) {
    throw new z.errors.Error(
      `This token opens ${workspaces.length} workspaces; connect with an API token of one workspace ` +
        '(its page, API tokens, or POST /api/v1/workspaces/{id}/tokens with role "admin").',
      'not_one_workspace',
      400,
    );
  }
  return workspaces[0];
};

module.exports = { base, addToken, explainErrors, workspace };

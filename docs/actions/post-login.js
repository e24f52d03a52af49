/**
 * Auth0 Post-Login Action: tell the sign-up service of a person's first login, which
 * covers accounts made by a social login (Google, GitHub, Facebook, ...) and by the
 * dashboard, on tenants without Event Streams (docs/auth0-events.md).
 *
 * Secrets (Actions > this Action > Secrets):
 *   SIGNUP_HOOK_URL   https://signup.example.com/hooks/auth0
 *   SIGNUP_HOOK_TOKEN the service's SIGNUP_AUTH0_EVENTS_TOKEN
 *
 * It posts the CloudEvent an Event Stream would post (type user.created, the profile
 * under data.object). It never blocks or fails the login: at most three tries within
 * about 5 seconds, then it gives up (the sweep, `signup sweep`, finds the account later).
 * Repeats are harmless: the service gives each account one user.new, whatever tells it.
 */
const TRIES = 3;
const TIMEOUT_MS = 1500;

exports.onExecutePostLogin = async (event, api) => {
  if (event.stats.logins_count !== 1) return; // not the first login
  const user = event.user;
  const body = JSON.stringify({
    id: `act_login_${user.user_id}`,
    source: `urn:auth0:${event.tenant.id}:actions`,
    specversion: "1.0",
    type: "user.created",
    time: new Date().toISOString(),
    data: {
      object: {
        user_id: user.user_id,
        email: user.email,
        email_verified: user.email_verified,
        name: user.name,
        given_name: user.given_name,
        family_name: user.family_name,
        created_at: user.created_at,
        identities: (user.identities || []).map((i) => ({
          connection: i.connection,
          provider: i.provider,
          isSocial: i.isSocial,
          user_id: i.user_id,
        })),
        app_metadata: user.app_metadata || {},
      },
    },
  });
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    try {
      const answer = await fetch(event.secrets.SIGNUP_HOOK_URL, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: `Bearer ${event.secrets.SIGNUP_HOOK_TOKEN}`,
        },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      if (answer.ok) return; // 204: durable on the service's side
      if (answer.status === 401 || answer.status === 404) {
        console.log(`signup hook answered ${answer.status}: check the secrets`);
        return; // retrying cannot help
      }
      console.log(`signup hook answered ${answer.status} (try ${attempt})`);
    } catch (err) {
      console.log(`signup hook unreachable (try ${attempt}): ${err}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
  }
};

/**
 * Auth0 Post-User-Registration Action: tell the sign-up service of an account made in a
 * database connection (the dashboard, the API, a sign-up page other than ours), on
 * tenants without Event Streams (docs/auth0-events.md). Social sign-ups do not run this
 * trigger: the Post-Login Action (post-login.js) covers them.
 *
 * Secrets: SIGNUP_HOOK_URL, SIGNUP_HOOK_TOKEN (the service's SIGNUP_AUTH0_EVENTS_TOKEN).
 *
 * The trigger runs after the account exists and cannot undo it; Auth0 does not retry it.
 * At most three tries within about 5 seconds, then it gives up (the sweep finds the
 * account later). Repeats are harmless: one user.new per account, whatever tells it.
 */
const TRIES = 3;
const TIMEOUT_MS = 1500;

exports.onExecutePostUserRegistration = async (event) => {
  const user = event.user;
  const body = JSON.stringify({
    id: `act_registration_${user.user_id}`,
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
        created_at: user.created_at || new Date().toISOString(),
        identities: [
          { connection: event.connection.name, provider: "auth0", isSocial: false },
        ],
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
      if (answer.ok) return;
      if (answer.status === 401 || answer.status === 404) {
        console.log(`signup hook answered ${answer.status}: check the secrets`);
        return;
      }
      console.log(`signup hook answered ${answer.status} (try ${attempt})`);
    } catch (err) {
      console.log(`signup hook unreachable (try ${attempt}): ${err}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
  }
};

/* The sign-up form's behaviour: plain JavaScript, no build step, no dependencies.
 *
 * Posts the form as JSON to the endpoint named by the form's data-endpoint, with an
 * Idempotency-Key that stays the same while the person retries the same data, and
 * shows the answer: a success panel on 201, inline field errors on 422/409, a
 * form-level message on 429/503 (with Retry-After), network failures and timeouts.
 */
(function () {
  "use strict";

  var FIELDS = ["email", "password", "given_name", "family_name"];
  /* The page's words, in English; the page passes its own language's in the form's
   * data-messages (JSON, rendered from the translation catalogues), and `{n}` stands for
   * a number. */
  var TEXT = {
    emailRequired: "Enter your e-mail address.",
    emailShape: "Enter an e-mail address in the form name@example.com.",
    passwordRequired: "Choose a password.",
    passwordShort: "Use at least {n} characters.",
    fixFieldsOne: "Please correct the highlighted field.",
    fixFieldsMany: "Please correct the {n} highlighted fields.",
    alreadyRegistered:
      "This e-mail address is already registered. Sign in instead, or use a different address.",
    signIn: "Sign in",
    tooMany: "Too many attempts.",
    unavailable: "We can't create accounts right now.",
    tryAgainInOne: "Please try again in 1 second.",
    tryAgainInMany: "Please try again in {n} seconds.",
    tryAgainSoon: "Please try again in a moment.",
    network:
      "We couldn't reach the server. Check your internet connection and try again — nothing was lost.",
    timeout: "The server is taking too long to answer. Please try again in a moment.",
    server: "Something went wrong on our side. Please try again in a moment.",
    submitting: "Creating your account…",
    checking: "Checking your browser…",
    checkFailed: "We couldn't check your browser. Reload the page and try again.",
    show: "Show",
    hide: "Hide",
  };

  function withNumber(text, n) {
    return text.split("{n}").join(String(n));
  }

  var MESSAGES = {
    passwordShort: function (n) {
      return withNumber(TEXT.passwordShort, n);
    },
    fixFields: function (n) {
      return n === 1 ? TEXT.fixFieldsOne : withNumber(TEXT.fixFieldsMany, n);
    },
    tryAgainIn: function (seconds) {
      return seconds === 1 ? TEXT.tryAgainInOne : withNumber(TEXT.tryAgainInMany, seconds);
    },
  };

  function useMessages(form) {
    var given = {};
    try {
      given = JSON.parse(form.getAttribute("data-messages") || "{}") || {};
    } catch (e) {
      given = {};
    }
    Object.keys(TEXT).forEach(function (key) {
      if (typeof given[key] === "string" && given[key]) {
        TEXT[key] = given[key];
      }
      if (!MESSAGES[key]) {
        MESSAGES[key] = TEXT[key];
      }
    });
  }

  function uuid4() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") {
      return c.randomUUID();
    }
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    var b = new Uint8Array(16);
    c.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = [];
    for (var i = 0; i < 16; i++) {
      h.push((b[i] + 0x100).toString(16).slice(1));
    }
    return (
      h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10, 16).join("")
    );
  }

  /* Retry-After is either delay-seconds or an HTTP date. */
  function retryAfterSeconds(value) {
    if (!value) {
      return null;
    }
    var text = String(value).trim();
    if (/^\d+$/.test(text)) {
      return Math.max(1, parseInt(text, 10));
    }
    var when = Date.parse(text);
    if (!isNaN(when)) {
      return Math.max(1, Math.ceil((when - Date.now()) / 1000));
    }
    return null;
  }

  function init() {
    var form = document.getElementById("signup-form");
    if (!form) {
      return;
    }
    var panel = document.getElementById("signup-panel");
    var success = document.getElementById("signup-success");
    var status = document.getElementById("form-status");
    var submit = document.getElementById("signup-submit");
    var toggle = document.getElementById("password-toggle");
    var endpoint = form.getAttribute("data-endpoint") || form.getAttribute("action");
    useMessages(form);
    var minLength = parseInt(form.getAttribute("data-password-min-length"), 10) || 8;
    // The site's own fields and consents (SIGNUP_FORM_FILE): [{name, kind}], each named as
    // the API names it (`fields.<name>`, `consents.<id>`), errors shown as for the others.
    var extra = [];
    try {
      extra = JSON.parse(form.getAttribute("data-extra-fields") || "[]");
    } catch (e) {
      extra = [];
    }
    extra.forEach(function (item) {
      FIELDS.push(item.name);
    });

    // The script shows its own messages, in place, in the same way as the server's.
    form.noValidate = true;

    var inFlight = false;
    var attempt = null; // {payload: string, key: string} of the last request sent

    // The proof-of-work widget (SIGNUP_CHALLENGE=pow, ALTCHA): it solves a challenge as
    // the page loads, and its latest solution goes with the form as `challenge`. A
    // solution is good for one sign-up: after an answer that may have used it, the
    // widget solves a new one; a form sent before it is done waits for it.
    var widget = form.querySelector("altcha-widget");
    var solution = null;
    var waiting = null; // the data of a form sent before the widget had a solution
    var resent = false; // resent once already after a used or expired solution

    function widgetCalls(name) {
      return widget && typeof widget[name] === "function";
    }

    function freshSolution() {
      solution = null;
      if (widgetCalls("reset") && widgetCalls("verify")) {
        widget.reset();
        widget.verify();
      }
    }

    if (widget) {
      widget.addEventListener("statechange", function (event) {
        var detail = event.detail || {};
        solution = detail.state === "verified" && detail.payload ? detail.payload : null;
        if (!waiting) {
          return;
        }
        if (solution) {
          var data = waiting;
          waiting = null;
          data.challenge = solution;
          send(data);
        } else if (detail.state === "error") {
          waiting = null;
          setBusy(false);
          setStatus(MESSAGES.checkFailed, "error");
          submit.focus();
        }
      });
    }

    /* Send the form with the widget's solution, waiting for one if need be. */
    function sendChecked(data) {
      if (!widget) {
        send(data);
        return;
      }
      if (solution) {
        data.challenge = solution;
        send(data);
        return;
      }
      waiting = data;
      setBusy(true);
      setStatus(MESSAGES.checking, "info");
      var state = widgetCalls("getState") ? widget.getState() : null;
      if (state !== "verifying" && widgetCalls("verify")) {
        widget.verify();
      }
    }

    /* A 422 only about the solution being used or expired: solve anew and send again,
     * once, without the person doing anything. */
    function resendForChallenge(errors, data) {
      var only = errors.length > 0 && errors.every(function (error) {
        return error && error.field === "challenge" &&
          (error.code === "challenge.used" || error.code === "challenge.expired");
      });
      if (!widget || resent || !only) {
        return false;
      }
      resent = true;
      attempt = null;
      delete data.challenge;
      freshSolution();
      sendChecked(data);
      return true;
    }

    function input(name) {
      return form.elements.namedItem(name);
    }

    function errorSlot(name) {
      return document.getElementById(name + "-error");
    }

    function setStatus(message, kind) {
      status.className = "notice" + (message && kind ? " notice--" + kind : "");
      status.textContent = message || "";
    }

    function clearErrors() {
      FIELDS.forEach(function (name) {
        var el = input(name);
        var slot = errorSlot(name);
        if (el) {
          el.removeAttribute("aria-invalid");
        }
        if (slot) {
          slot.textContent = "";
        }
      });
      setStatus("");
    }

    function clearFieldError(name) {
      var el = input(name);
      var slot = errorSlot(name);
      if (el && el.getAttribute("aria-invalid") === "true") {
        el.removeAttribute("aria-invalid");
        if (slot) {
          slot.textContent = "";
        }
      }
    }

    /* errors: [{field, message}] in any order; shows each next to its field (several
     * messages for one field are joined), puts the rest in the form-level status,
     * and moves focus to the first invalid field in the form's order. */
    function showErrors(errors, summary) {
      var byField = {};
      var general = [];
      errors.forEach(function (error) {
        var field = error && error.field;
        var message = (error && error.message) || "";
        if (FIELDS.indexOf(field) !== -1) {
          (byField[field] = byField[field] || []).push(message);
        } else if (message) {
          general.push(message);
        }
      });
      var first = null;
      var count = 0;
      FIELDS.forEach(function (name) {
        if (!byField[name]) {
          return;
        }
        count += 1;
        var el = input(name);
        el.setAttribute("aria-invalid", "true");
        errorSlot(name).textContent = byField[name].join(" ");
        if (!first) {
          first = el;
        }
      });
      var parts = [];
      if (count) {
        parts.push(summary || MESSAGES.fixFields(count));
      }
      parts = parts.concat(general);
      setStatus(parts.join(" "), "error");
      if (first) {
        first.focus();
      } else {
        submit.focus();
      }
    }

    function collect() {
      var data = {
        email: input("email").value.trim(),
        password: input("password").value,
      };
      ["given_name", "family_name"].forEach(function (name) {
        var value = input(name).value.trim();
        if (value) {
          data[name] = value;
        }
      });
      extra.forEach(function (item) {
        var el = input(item.name);
        if (!el) {
          return;
        }
        var dot = item.name.indexOf(".");
        var part = item.name.slice(0, dot);
        var key = item.name.slice(dot + 1);
        var value;
        if (item.kind === "checkbox" || item.kind === "consent") {
          value = el.checked;
        } else {
          value = el.value.trim();
          if (!value) {
            return; // left empty: not sent (the server names a required one)
          }
        }
        (data[part] = data[part] || {})[key] = value;
      });
      // The honeypot, hidden from people: sent only when something filled it.
      var trap = document.getElementById("website");
      if (trap && trap.value) {
        data.website = trap.value;
      }
      return data;
    }

    /* Light checks only; the server remains the authority. */
    function check(data) {
      var errors = [];
      if (!data.email) {
        errors.push({ field: "email", message: MESSAGES.emailRequired });
      } else if (!/^\S+@\S+$/.test(data.email)) {
        errors.push({ field: "email", message: MESSAGES.emailShape });
      }
      if (!data.password) {
        errors.push({ field: "password", message: MESSAGES.passwordRequired });
      } else if (Array.from(data.password).length < minLength) {
        errors.push({ field: "password", message: MESSAGES.passwordShort(minLength) });
      }
      return errors;
    }

    function setBusy(busy) {
      inFlight = busy;
      submit.disabled = busy;
      if (busy) {
        submit.setAttribute("aria-busy", "true");
      } else {
        submit.removeAttribute("aria-busy");
      }
    }

    function clearPassword() {
      var el = input("password");
      el.value = "";
      if (toggle && el.type !== "password") {
        setPasswordVisible(false);
      }
    }

    function showSuccess(data, body) {
      var email = (body && body.email) || data.email;
      success.querySelector('[data-slot="email"]').textContent = email;
      success.querySelector('[data-slot="comma-name"]').textContent = data.given_name
        ? ", " + data.given_name
        : "";
      var onward = document.getElementById("success-continue");
      if (onward && onward.getAttribute("data-login-hint") === "true") {
        var href = onward.getAttribute("href");
        onward.setAttribute(
          "href",
          href + (href.indexOf("?") < 0 ? "?" : "&") + "login_hint=" + encodeURIComponent(email)
        );
        onward.removeAttribute("data-login-hint");
      }
      form.reset();
      attempt = null;
      panel.hidden = true;
      success.hidden = false;
      var heading = document.getElementById("success-title") || success;
      heading.focus();
    }

    /* The 409's way on: a "Sign in" link in the form's status, to the site's sign-in
     * (only an http(s) URL or a path of this site is followed). */
    function showSignIn(url) {
      if (typeof url !== "string" || !/^(https?:\/\/|\/(?!\/))/i.test(url)) {
        return;
      }
      var link = document.createElement("a");
      link.href = url;
      link.id = "status-sign-in";
      link.textContent = MESSAGES.signIn;
      status.appendChild(document.createTextNode(" "));
      status.appendChild(link);
    }

    function problemOf(response) {
      return response
        .text()
        .then(function (text) {
          try {
            return JSON.parse(text);
          } catch (e) {
            return {};
          }
        })
        .catch(function () {
          return {};
        });
    }

    function handleResponse(response, data) {
      if (response.ok) {
        return problemOf(response).then(function (body) {
          showSuccess(data, body);
        });
      }
      var waitFor = retryAfterSeconds(response.headers.get("Retry-After"));
      return problemOf(response).then(function (problem) {
        var errors = Array.isArray(problem.errors) ? problem.errors : [];
        if (response.status === 422 && resendForChallenge(errors, data)) {
          return;
        }
        if (response.status === 422 || response.status === 400 || response.status === 409) {
          freshSolution();
        }
        if (response.status === 422 || response.status === 400) {
          clearPassword();
          attempt = null;
          if (errors.length) {
            showErrors(errors);
          } else {
            showErrors([{ field: "body", message: problem.detail || problem.title || MESSAGES.server }]);
          }
        } else if (response.status === 409) {
          clearPassword();
          attempt = null;
          showErrors([{ field: "email", message: MESSAGES.alreadyRegistered }]);
          showSignIn(problem.sign_in_url);
        } else if (response.status === 429 || response.status === 503) {
          var lead = response.status === 429 ? MESSAGES.tooMany : MESSAGES.unavailable;
          setStatus(
            lead + " " + (waitFor ? MESSAGES.tryAgainIn(waitFor) : MESSAGES.tryAgainSoon),
            "error"
          );
          submit.focus();
        } else if (response.status >= 500) {
          setStatus(MESSAGES.server, "error");
          submit.focus();
        } else {
          // 403, 413, 415 and anything unforeseen: say what the server said.
          attempt = null;
          setStatus(problem.detail || problem.title || MESSAGES.server, "error");
          submit.focus();
        }
      });
    }

    function send(data) {
      var payload = JSON.stringify(data);
      // One key per attempt at this data: a retry of the very same data reuses it, so the
      // server can answer a repeated request without creating a second account.
      if (!attempt || attempt.payload !== payload) {
        attempt = { payload: payload, key: uuid4() };
      }
      var timeoutMs = parseInt(form.getAttribute("data-timeout-ms"), 10) || 15000;
      var controller = typeof AbortController === "function" ? new AbortController() : null;
      var headers = {
        "Content-Type": "application/json",
        Accept: "application/json, application/problem+json",
        "Idempotency-Key": attempt.key,
      };
      // The page's language: its errors, its consents and the welcome e-mail speak it.
      var language = form.getAttribute("data-language") || document.documentElement.lang;
      if (language) {
        headers["Accept-Language"] = language;
      }
      var timedOut = false;
      var timer = setTimeout(function () {
        timedOut = true;
        if (controller) {
          controller.abort();
        }
      }, timeoutMs);

      setBusy(true);
      setStatus(MESSAGES.submitting, "info");

      return fetch(endpoint, {
        method: "POST",
        headers: headers,
        body: payload,
        credentials: "same-origin",
        cache: "no-store",
        signal: controller ? controller.signal : undefined,
      })
        .then(function (response) {
          if (timedOut) {
            throw new Error("timeout");
          }
          return handleResponse(response, data);
        })
        .catch(function () {
          setStatus(timedOut ? MESSAGES.timeout : MESSAGES.network, "error");
          submit.focus();
        })
        .then(function () {
          clearTimeout(timer);
          if (!waiting) {
            setBusy(false); // else the form goes again once the widget has solved anew
          }
        });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (inFlight) {
        return;
      }
      clearErrors();
      var data = collect();
      var problems = check(data);
      if (problems.length) {
        showErrors(problems);
        return;
      }
      resent = false;
      sendChecked(data);
    });

    // An error goes away as soon as the person edits the field it is about.
    FIELDS.forEach(function (name) {
      var el = input(name);
      if (el) {
        el.addEventListener("input", function () {
          clearFieldError(name);
        });
      }
    });

    function setPasswordVisible(visible) {
      var el = input("password");
      el.type = visible ? "text" : "password";
      toggle.querySelector(".field__toggle-text").textContent = visible ? TEXT.hide : TEXT.show;
    }

    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", function () {
        setPasswordVisible(input("password").type === "password");
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

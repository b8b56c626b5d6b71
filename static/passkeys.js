// Passkey buttons of the portal. WebAuthn needs JavaScript; every other path works without it.
// A form marked data-passkey="create" or "get" has a hidden button, shown here when the browser
// has passkeys. Clicking it fetches the options (POST to data-options-url, with the form's CSRF
// token), runs the ceremony, writes the answer's WebAuthn JSON into the hidden "credential" field
// (and "challenge_id" when the options name one) and submits the form like any other.
// What it says when something fails comes from the page, in the page's language: the data-not-started,
// data-not-used and data-failed attributes of the form's [data-passkey-message] box (English without them).
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) { return; }

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer), binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: toBytes(c.id) }); });
  }

  function creationOptions(json) {
    return Object.assign({}, json, {
      challenge: toBytes(json.challenge),
      user: Object.assign({}, json.user, { id: toBytes(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials)
    });
  }

  function requestOptions(json) {
    return Object.assign({}, json, { challenge: toBytes(json.challenge),
                                     allowCredentials: descriptors(json.allowCredentials) });
  }

  function answer(credential) {
    var r = credential.response, response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) { response.transports = r.getTransports(); }
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) { response.userHandle = toText(r.userHandle); }
    }
    var json = { id: credential.id, rawId: toText(credential.rawId), type: credential.type, response: response,
                 clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {} };
    if (credential.authenticatorAttachment) { json.authenticatorAttachment = credential.authenticatorAttachment; }
    return json;
  }

  var ENGLISH = { notStarted: "The passkey could not be started.",
                  notUsed: "The passkey was not used. You can try again.",
                  failed: "The passkey did not work. You can try again." };

  function words(form, key) {
    var box = form.querySelector("[data-passkey-message]");
    return (box && box.dataset[key]) || ENGLISH[key];
  }

  function say(form, message) {
    var box = form.querySelector("[data-passkey-message]");
    if (box) { box.textContent = message; box.hidden = false; }
  }

  function run(form) {
    var create = form.dataset.passkey === "create";
    var token = form.querySelector("input[name=csrf_token]").value;
    fetch(form.dataset.optionsUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": token } })
      .then(function (reply) {
        return reply.json().then(function (body) {
          if (!reply.ok) {
            if (body.reauthenticate) { window.location.assign(body.reauthenticate); }
            throw new Error(body.error || words(form, "notStarted"));
          }
          return body;
        });
      })
      .then(function (body) {
        var ceremony = create
          ? navigator.credentials.create({ publicKey: creationOptions(body.options) })
          : navigator.credentials.get({ publicKey: requestOptions(body.options) });
        return ceremony.then(function (credential) {
          form.querySelector("input[name=credential]").value = JSON.stringify(answer(credential));
          var challenge = form.querySelector("input[name=challenge_id]");
          if (challenge && body.challengeId) { challenge.value = body.challengeId; }
          form.submit();
        });
      })
      .catch(function (error) {
        say(form, error && error.name === "NotAllowedError"
          ? words(form, "notUsed")
          : (error && error.message) || words(form, "failed"));
      });
  }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var button = form.querySelector("[data-passkey-button]");
    if (!button) { return; }
    button.hidden = false;
    button.addEventListener("click", function () { run(form); });
  });
})();

// Mohr remote signing pages: the WebAuthn ceremonies (registration with a code; activation of a signing
// request). Everything is fetched from this page's own origin; nothing is stored in the browser.
"use strict";
(function () {
  const status = document.getElementById("status");
  const msgs = document.getElementById("msgs");
  function say(key, cls, extra) {
    const m = msgs && msgs.querySelector('li[data-key="' + CSS.escape(key) + '"]');
    status.textContent = (m ? m.textContent : key) + (extra ? " " + extra : "");
    status.className = cls || "";
  }
  async function call(path, body) {
    let r;
    try {
      r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), credentials: "same-origin" });
    } catch (e) {
      throw { key: "network" };
    }
    const j = await r.json().catch(() => ({ error: "server" }));
    if (!r.ok) throw { key: j.error || "server", ref: j.ref };
    return j;
  }
  function fail(e) {
    if (e && e.key) return say(e.key, "bad", e.ref);
    if (e && (e.name === "NotAllowedError" || e.name === "AbortError")) return say("cancelled", "bad");
    say("server", "bad", e && e.name ? e.name : "");
  }
  function supported() {
    return window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON && PublicKeyCredential.parseRequestOptionsFromJSON;
  }

  const reg = document.getElementById("register");
  if (reg) {
    reg.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!supported()) return say("unsupported", "bad");
      const btn = reg.querySelector("button");
      btn.disabled = true;
      const code = document.getElementById("code").value.trim();
      try {
        const o = await call("/remote/register/options", { code });
        say("working");
        const c = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(o.publicKey) });
        await call("/remote/register/finish", { code, credential: c.toJSON() });
        say("registered", "ok");
        reg.hidden = true;
      } catch (e) {
        fail(e);
      } finally {
        btn.disabled = false;
      }
    });
  }
})();

// Mohr remote signing pages: the WebAuthn ceremonies (registration with a code; activation of a signing
// request). Everything is fetched from this page's own origin; nothing is stored in the browser.
"use strict";
(function () {
  const status = document.getElementById("status");
  const msgs = document.getElementById("msgs");
  function say(key, cls, extra) {
    const m = key && msgs && msgs.querySelector('li[data-key="' + CSS.escape(key) + '"]');
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

  const act = document.getElementById("activate");
  if (act) {
    const handle = new URLSearchParams(location.search).get("h") || "";
    let opts = null;
    (async () => {
      say("loading");
      try {
        opts = await call("/remote/activate/options", { handle });
      } catch (e) {
        return fail(e);
      }
      document.getElementById("a-name").textContent = opts.name;
      document.getElementById("a-council").textContent = opts.councilNumber;
      document.getElementById("a-count").textContent = String(opts.count);
      document.getElementById("a-expires").textContent = opts.expiresAt.replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
      const ol = document.getElementById("a-hashes");
      for (const h of opts.hashes) {
        const li = document.createElement("li");
        li.textContent = h;
        ol.appendChild(li);
      }
      act.hidden = false;
      say("", "");
    })();
    document.getElementById("approve").addEventListener("click", async () => {
      if (!opts) return;
      if (!supported()) return say("unsupported", "bad");
      const btn = document.getElementById("approve");
      btn.disabled = true;
      try {
        say("working");
        const c = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey) });
        await call("/remote/activate/approve", { handle, credential: c.toJSON() });
        say("approved", "ok");
        act.hidden = true;
      } catch (e) {
        fail(e);
      } finally {
        btn.disabled = false;
      }
    });
  }
})();

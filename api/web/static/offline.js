// Mohr: the offline check of a prescription's QR text in the browser (docs/offline.md "In the browser").
//
// The page hands this script the pinned public key of the Ministry's trust-bundle seal (data-seal-key, a
// base64 SubjectPublicKeyInfo). The script fetches GET /trust-bundle once, verifies the bundle's COSE_Sign1
// seal with WebCrypto against the pinned key, keeps it in localStorage with the time it was fetched, and from
// then on checks RX1: texts with no network: Base45 (RFC 9285), zlib with the preset dictionary (RFC 1950),
// CBOR (RFC 8949, canonical, as signing/offline reads it), the COSE_Sign1 signature (RFC 9052 §4.4) with
// WebCrypto, the physician's certificate chain to the bundle's intermediates and roots, the certificates'
// dates, the physician-signing profile and the bundle's revocation snapshot. It gives the indications and
// sub-indications of signing/offline.Verify (what `mohr qr verify` prints); the Go code is the reference and
// TestBrowserOfflineJS compares the two verdicts.
//
// No library, no build step: the formats are small, and a verifier that pharmacies rely on should be
// readable in one file. Nothing here sends anything anywhere: the only request is GET /trust-bundle.
(function () {
  "use strict";

  var PREFIX = "RX1:";
  var MAX_TEXT = 4296; // the largest QR code's alphanumeric capacity (signing/offline maxText)
  var MAX_INFLATED = 16 << 10;
  var BUNDLE_SKEW = 5 * 60 * 1000;
  var BUNDLE_TYPE = "application/vnd.mohr.trust-bundle+cbor";
  var CACHE_KEY = "mohr.trust-bundle.v1";
  var REFRESH_MS = 6 * 3600 * 1000; // a cached bundle younger than this is used without asking the network
  // STATIC_DICT starts every RX1 zlib preset dictionary; it must equal signing/offline's staticDictionary
  // (TestOfflineJSDictionary compares them).
  var STATIC_DICT = "Medical Council of the I.R. of Iran General Practitioner Physician http:// https:// /ocsp /crl/ .crl " +
    "IDCIR- tablet capsule inhaler syrup drops ampoule vial sachet puffs every hours once daily twice daily three times " +
    "with meals before breakfast after food at night as needed for days max a day morning evening";

  var subtle = window.crypto && window.crypto.subtle;

  // Failure carries the ETSI EN 319 102-1 sub-indication of the check that failed.
  function Failure(sub, reason) { this.sub = sub; this.reason = reason; }
  function fail(sub, reason) { throw new Failure(sub, reason); }
  var TOTAL_FAILED = { FORMAT_FAILURE: 1, HASH_FAILURE: 1, SIG_CRYPTO_FAILURE: 1, REVOKED: 1, EXPIRED: 1, NOT_YET_VALID: 1 };
  function indicationOf(sub) { return !sub ? "TOTAL_PASSED" : TOTAL_FAILED[sub] ? "TOTAL_FAILED" : "INDETERMINATE"; }

  // A malformed input; the caller turns it into a sub-indication.
  function Malformed(msg) { this.message = msg; }
  function bad(msg) { throw new Malformed(msg); }

  function utf8(s) { return new TextEncoder().encode(s); }
  function equalBytes(a, b) {
    if (a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }
  function concat(parts) {
    var n = 0, i;
    for (i = 0; i < parts.length; i++) { n += parts[i].length; }
    var out = new Uint8Array(n), o = 0;
    for (i = 0; i < parts.length; i++) { out.set(parts[i], o); o += parts[i].length; }
    return out;
  }
  function hex(b) { return Array.prototype.map.call(b, function (x) { return (x < 16 ? "0" : "") + x.toString(16); }).join(""); }
  function b64decode(s) {
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function b64encode(b) {
    var s = "";
    for (var i = 0; i < b.length; i += 8192) { s += String.fromCharCode.apply(null, b.subarray(i, i + 8192)); }
    return btoa(s);
  }
  function iso(ms) { return new Date(ms).toISOString().replace(".000Z", "Z"); }

  // ---- Base45, RFC 9285 §4.2, refusing non-canonical input as signing/offline.DecodeBase45 does.
  var B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  function base45(s) {
    if (s.length % 3 === 1) { bad("invalid Base45"); }
    var out = [];
    for (var i = 0; i < s.length; i += 3) {
      var n = Math.min(3, s.length - i), v = [0, 0, 0];
      for (var j = 0; j < n; j++) {
        v[j] = B45.indexOf(s.charAt(i + j));
        if (v[j] < 0) { bad("invalid Base45"); }
      }
      if (n === 3) {
        var w = v[0] + v[1] * 45 + v[2] * 2025;
        if (w > 0xffff) { bad("invalid Base45"); }
        out.push(w >> 8, w & 0xff);
      } else {
        var x = v[0] + v[1] * 45;
        if (x > 0xff) { bad("invalid Base45"); }
        out.push(x);
      }
    }
    return new Uint8Array(out);
  }

  // ---- zlib (RFC 1950) and DEFLATE (RFC 1951).
  // Written by hand because the browser's DecompressionStream("deflate") cannot take a preset dictionary
  // (FDICT), which every RX1 code uses. It follows RFC 1951 §3.2 as Go's compress/flate reads it: complete
  // Huffman codes only (one code of length one excepted), an end-of-block code required, no distance beyond
  // the dictionary and the output so far, and at most MAX_INFLATED bytes out.
  function adler32(b) {
    var a = 1, c = 0;
    for (var i = 0; i < b.length; i++) { a = (a + b[i]) % 65521; c = (c + a) % 65521; }
    return ((c << 16) | a) >>> 0;
  }
  var LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
  var LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
  var DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
    6145, 8193, 12289, 16385, 24577];
  var DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
  var CLORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

  // huffman builds a canonical code (RFC 1951 §3.2.2) from code lengths.
  function huffman(lengths) {
    var counts = new Array(16).fill(0), i, max = 0, used = 0;
    for (i = 0; i < lengths.length; i++) { counts[lengths[i]]++; if (lengths[i] > max) { max = lengths[i]; } }
    counts[0] = 0;
    var left = 1;
    for (i = 1; i < 16; i++) { left = left * 2 - counts[i]; if (left < 0) { bad("over-subscribed Huffman code"); } used += counts[i]; }
    if (left > 0 && !(used === 1 && max === 1)) { bad("incomplete Huffman code"); }
    var offs = new Array(16).fill(0);
    for (i = 1; i < 15; i++) { offs[i + 1] = offs[i] + counts[i]; }
    var symbols = new Array(used);
    for (i = 0; i < lengths.length; i++) { if (lengths[i]) { symbols[offs[lengths[i]]++] = i; } }
    return { counts: counts, symbols: symbols };
  }

  function inflate(data, pos, dict) {
    var win = new Uint8Array(dict.length + MAX_INFLATED + 259), o = dict.length;
    win.set(dict, 0);
    var bitbuf = 0, bitcnt = 0;
    function bits(n) {
      while (bitcnt < n) {
        if (pos >= data.length) { bad("unexpected end of DEFLATE data"); }
        bitbuf |= data[pos++] << bitcnt;
        bitcnt += 8;
      }
      var v = bitbuf & ((1 << n) - 1);
      bitbuf >>>= n;
      bitcnt -= n;
      return v;
    }
    function decode(h) {
      var code = 0, first = 0, index = 0;
      for (var len = 1; len < 16; len++) {
        code |= bits(1);
        var count = h.counts[len];
        if (code - first < count) { return h.symbols[index + code - first]; }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
      }
      bad("invalid Huffman code");
    }
    function put(b) {
      if (o - dict.length >= MAX_INFLATED + 1) { bad("too large"); }
      win[o++] = b;
    }
    var fixedLit, fixedDist;
    var last;
    do {
      last = bits(1);
      var type = bits(2), lit, dist, i;
      if (type === 0) {
        bitbuf = 0; bitcnt = 0; // RFC 1951 §3.2.4: skip to a byte boundary
        if (pos + 4 > data.length) { bad("unexpected end of DEFLATE data"); }
        var len = data[pos] | (data[pos + 1] << 8), nlen = data[pos + 2] | (data[pos + 3] << 8);
        pos += 4;
        if (len !== (~nlen & 0xffff)) { bad("stored block length"); }
        if (pos + len > data.length) { bad("unexpected end of DEFLATE data"); }
        for (i = 0; i < len; i++) { put(data[pos++]); }
        continue;
      }
      if (type === 1) {
        if (!fixedLit) {
          var l = [];
          for (i = 0; i < 288; i++) { l.push(i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8); }
          fixedLit = huffman(l);
          fixedDist = huffman(new Array(30).fill(5).concat([5, 5]));
        }
        lit = fixedLit; dist = fixedDist;
      } else if (type === 2) {
        var nlit = bits(5) + 257, ndist = bits(5) + 1, ncl = bits(4) + 4;
        if (nlit > 286 || ndist > 30) { bad("too many Huffman codes"); }
        var cl = new Array(19).fill(0);
        for (i = 0; i < ncl; i++) { cl[CLORDER[i]] = bits(3); }
        var clh = huffman(cl), lengths = [];
        while (lengths.length < nlit + ndist) {
          var sym = decode(clh), rep = 0, val = 0;
          if (sym < 16) { lengths.push(sym); continue; }
          if (sym === 16) {
            if (!lengths.length) { bad("repeat with no previous length"); }
            val = lengths[lengths.length - 1]; rep = 3 + bits(2);
          } else if (sym === 17) { rep = 3 + bits(3); } else { rep = 11 + bits(7); }
          if (lengths.length + rep > nlit + ndist) { bad("too many code lengths"); }
          while (rep--) { lengths.push(val); }
        }
        if (!lengths[256]) { bad("no end-of-block code"); }
        lit = huffman(lengths.slice(0, nlit));
        dist = huffman(lengths.slice(nlit));
      } else {
        bad("invalid DEFLATE block type");
      }
      for (;;) {
        var s = decode(lit);
        if (s < 256) { put(s); continue; }
        if (s === 256) { break; }
        s -= 257;
        if (s >= 29) { bad("invalid length code"); }
        var n = LBASE[s] + bits(LEXT[s]);
        var ds = decode(dist);
        if (ds >= 30) { bad("invalid distance code"); }
        var d = DBASE[ds] + bits(DEXT[ds]);
        if (d > o) { bad("distance too far back"); }
        while (n--) { put(win[o - d]); }
      }
    } while (!last);
    var out = win.slice(dict.length, o);
    if (out.length > MAX_INFLATED) { bad("too large"); }
    return { out: out, pos: pos };
  }

  // dictionaryFor returns Dictionary(issuer) of signing/offline: the static part, then the issuer's DER.
  function dictionaryFor(issuerDER) { return concat([utf8(STATIC_DICT), issuerDER]); }

  // decodeText is signing/offline.DecodeText: the COSE_Sign1 bytes of a QR text. issuers are the bundle's
  // intermediates (DER); a stream made with the dictionary of another CA fails NO_CERTIFICATE_CHAIN_FOUND.
  function decodeText(text, issuers) {
    text = text.trim();
    if (text.length > MAX_TEXT + PREFIX.length || text.indexOf(PREFIX) !== 0) { bad('missing "RX1:" prefix'); }
    var z = base45(text.slice(PREFIX.length));
    var dict = new Uint8Array(0);
    if (z.length >= 6 && (z[1] & 0x20)) {
      var id = ((z[2] << 24) | (z[3] << 16) | (z[4] << 8) | z[5]) >>> 0, found = null;
      for (var i = 0; i < issuers.length; i++) {
        var d = dictionaryFor(issuers[i]);
        if (adler32(d) === id) { found = d; break; }
      }
      if (!found) { fail("NO_CERTIFICATE_CHAIN_FOUND", "offline: the code was made for a CA that is not in the trust bundle"); }
      dict = found;
    }
    if (z.length < 2) { bad("zlib: unexpected EOF"); }
    var cmf = z[0], flg = z[1];
    if ((cmf & 0x0f) !== 8 || (cmf >> 4) > 7 || ((cmf << 8) | flg) % 31 !== 0) { bad("zlib: invalid header"); }
    var start = 2;
    if (flg & 0x20) {
      if (z.length < 6) { bad("zlib: unexpected EOF"); }
      start = 6;
    } else {
      dict = new Uint8Array(0);
    }
    var r = inflate(z, start, dict);
    if (r.pos + 4 > z.length) { bad("zlib: unexpected EOF"); }
    var sum = ((z[r.pos] << 24) | (z[r.pos + 1] << 16) | (z[r.pos + 2] << 8) | z[r.pos + 3]) >>> 0;
    if (sum !== adler32(r.out)) { bad("zlib: invalid checksum"); }
    return r.out;
  }

  // ---- CBOR (RFC 8949): a strict reader of definite-length items and a core deterministic writer.
  // Integers are JavaScript numbers up to 2^53-1; larger ones are refused. Maps are Map objects.
  function Tagged(tag, value) { this.tag = tag; this.value = value; }
  var utf8strict = new TextDecoder("utf-8", { fatal: true });

  function cborDecode(b, opt) {
    opt = opt || {};
    var maxDepth = opt.depth || 16, maxPairs = opt.pairs || 64, maxItems = opt.items || 100000, p = 0;
    function arg(ai) {
      if (ai < 24) { return ai; }
      var n = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : ai === 27 ? 8 : 0;
      if (!n) { bad("cbor: indefinite length or reserved value"); }
      if (p + n > b.length) { bad("cbor: unexpected EOF"); }
      var v = 0;
      for (var i = 0; i < n; i++) { v = v * 256 + b[p++]; }
      if (v > Number.MAX_SAFE_INTEGER) { bad("cbor: integer too large"); }
      return v;
    }
    function item(depth) {
      if (depth > maxDepth) { bad("cbor: nested too deep"); }
      if (p >= b.length) { bad("cbor: unexpected EOF"); }
      var ib = b[p++], mt = ib >> 5, ai = ib & 31, n, i, out;
      if (mt === 7) {
        if (ai === 20) { return false; }
        if (ai === 21) { return true; }
        if (ai === 22) { return null; }
        bad("cbor: unsupported simple value or float");
      }
      n = arg(ai);
      switch (mt) {
        case 0: return n;
        case 1: return -1 - n;
        case 2: case 3:
          if (p + n > b.length) { bad("cbor: unexpected EOF"); }
          out = b.slice(p, p + n); p += n;
          if (mt === 2) { return out; }
          try { return utf8strict.decode(out); } catch (e) { bad("cbor: invalid UTF-8"); }
          break;
        case 4:
          if (n > maxItems) { bad("cbor: array too long"); }
          out = [];
          for (i = 0; i < n; i++) { out.push(item(depth + 1)); }
          return out;
        case 5:
          if (n > maxPairs) { bad("cbor: map too large"); }
          out = new Map();
          for (i = 0; i < n; i++) {
            var k = item(depth + 1);
            if (typeof k !== "number" && typeof k !== "string") { bad("cbor: unsupported map key"); }
            if (out.has(k)) { bad("cbor: duplicate map key"); }
            out.set(k, item(depth + 1));
          }
          return out;
        case 6:
          if (!opt.tags) { bad("cbor: tags are not allowed"); }
          return new Tagged(n, item(depth + 1));
      }
    }
    var v = item(1);
    if (p !== b.length) { bad("cbor: extraneous data"); }
    return v;
  }

  function head(mt, n) {
    if (n < 24) { return [(mt << 5) | n]; }
    if (n < 256) { return [(mt << 5) | 24, n]; }
    if (n < 65536) { return [(mt << 5) | 25, n >> 8, n & 0xff]; }
    var be32 = function (x) { return [(x >>> 24) & 0xff, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff]; };
    if (n < 4294967296) { return [(mt << 5) | 26].concat(be32(n)); }
    return [(mt << 5) | 27].concat(be32(Math.floor(n / 4294967296)), be32(n % 4294967296));
  }
  function cborEncode(v) {
    if (typeof v === "number") { return new Uint8Array(v >= 0 ? head(0, v) : head(1, -1 - v)); }
    if (typeof v === "string") { var s = utf8(v); return concat([new Uint8Array(head(3, s.length)), s]); }
    if (v instanceof Uint8Array) { return concat([new Uint8Array(head(2, v.length)), v]); }
    if (Array.isArray(v)) { return concat([new Uint8Array(head(4, v.length))].concat(v.map(cborEncode))); }
    if (v instanceof Map) { // RFC 8949 §4.2.1: keys sorted by the bytewise order of their encodings
      var entries = [];
      v.forEach(function (val, k) { entries.push([cborEncode(k), cborEncode(val)]); });
      entries.sort(function (x, y) {
        for (var i = 0; i < Math.min(x[0].length, y[0].length); i++) { if (x[0][i] !== y[0][i]) { return x[0][i] - y[0][i]; } }
        return x[0].length - y[0].length;
      });
      var parts = [new Uint8Array(head(5, entries.length))];
      entries.forEach(function (e) { parts.push(e[0], e[1]); });
      return concat(parts);
    }
    bad("cbor: cannot encode");
  }

  // fields reads a map with small integer keys, each of the expected type; unknown keys are refused.
  function fields(m, spec, what) {
    if (!(m instanceof Map)) { bad(what + ": not a map"); }
    var out = {};
    m.forEach(function (v, k) {
      var t = spec[k];
      if (typeof k !== "number" || !t) { bad(what + ": unknown key " + k); }
      var ok = t === "uint" ? typeof v === "number" && v >= 0 : t === "int" ? typeof v === "number" :
        t === "bstr" ? v instanceof Uint8Array : t === "tstr" ? typeof v === "string" : t === "array" ? Array.isArray(v) : false;
      if (!ok) { bad(what + ": key " + k + " is not a " + t); }
      out[k] = v;
    });
    return out;
  }
  function byteLen(s) { return utf8(s).length; }

  // ---- Identifiers, as internal/ids reads them.
  function normalizeDigits(s) {
    return s.trim().replace(/[\u06F0-\u06F9]/g, function (c) { return String(c.charCodeAt(0) - 0x06F0); })
      .replace(/[\u0660-\u0669]/g, function (c) { return String(c.charCodeAt(0) - 0x0660); });
  }
  function nationalCode(code) {
    var c = normalizeDigits(code);
    if (!/^[0-9]{10}$/.test(c) || /^(.)\1{9}$/.test(c)) { return null; }
    var sum = 0;
    for (var i = 0; i < 9; i++) { sum += (c.charCodeAt(i) - 48) * (10 - i); }
    var r = sum % 11, check = c.charCodeAt(9) - 48;
    return (r < 2 ? check === r : check === 11 - r) ? c : null;
  }
  function councilNumber(n) {
    var c = normalizeDigits(n);
    return /^[0-9]{1,10}$/.test(c) ? c : null;
  }

  // parsePayload is signing/offline.ParsePayload: the one canonical encoding of a valid payload.
  function parsePayload(b) {
    var f = fields(cborDecode(b, { depth: 8 }), { 1: "uint", 2: "bstr", 3: "int", 4: "tstr", 5: "tstr", 6: "array", 7: "bstr", 8: "bstr" }, "payload");
    var meds = (f[6] || []).map(function (m) {
      var g = fields(m, { 1: "tstr", 2: "tstr", 3: "uint", 4: "tstr", 5: "uint" }, "medicine");
      if ((g[3] || 0) > 0xffffffff || (g[5] || 0) > 0xffffffff) { bad("medicine: quantity or repeats too large"); }
      return { code: g[1] || "", dosage: g[2] || "", quantity: g[3] || 0, unit: g[4] || "", repeats: g[5] || 0 };
    });
    var p = { version: f[1] || 0, id: f[2] || new Uint8Array(0), issued: f[3] || 0, patient: f[4] || "", prescriber: f[5] || "",
      medicines: meds, contentSHA256: f[7] || new Uint8Array(0), signatureSHA256: f[8] || new Uint8Array(0) };
    // Re-encode as signing/offline writes it (medicine keys 3 to 5 omitted when empty) and compare.
    var canon = new Map([[1, p.version], [2, p.id], [3, p.issued], [4, p.patient], [5, p.prescriber],
      [6, meds.map(function (m) {
        var mm = new Map([[1, m.code], [2, m.dosage]]);
        if (m.quantity) { mm.set(3, m.quantity); }
        if (m.unit) { mm.set(4, m.unit); }
        if (m.repeats) { mm.set(5, m.repeats); }
        return mm;
      })], [7, p.contentSHA256], [8, p.signatureSHA256]]);
    if (!equalBytes(cborEncode(canon), b)) { bad("offline: malformed payload: not in canonical CBOR"); }
    if (p.version !== 1 || p.id.length !== 16 || p.issued <= 0 || !meds.length || meds.length > 10 ||
      p.contentSHA256.length !== 32 || p.signatureSHA256.length !== 32 ||
      nationalCode(p.patient) !== p.patient || councilNumber(p.prescriber) !== p.prescriber) {
      bad("offline: malformed payload");
    }
    meds.forEach(function (m) {
      if (!m.code || byteLen(m.code) > 32 || byteLen(m.dosage) > 200 || byteLen(m.unit) > 32) { bad("offline: malformed payload: medicine code or dosage"); }
    });
    return p;
  }

  // ---- DER (X.690) and X.509 (RFC 5280), only what the check needs.
  function tlv(b, p, end) {
    if (p + 2 > end) { bad("der: truncated"); }
    var tag = b[p], len = b[p + 1], q = p + 2;
    if ((tag & 0x1f) === 0x1f) { bad("der: high tag number"); }
    if (len & 0x80) {
      var n = len & 0x7f;
      if (n === 0 || n > 4 || q + n > end) { bad("der: bad length"); }
      len = 0;
      for (var i = 0; i < n; i++) { len = len * 256 + b[q++]; }
      if (len < 128 || (n > 1 && b[p + 2] === 0)) { bad("der: non-minimal length"); }
    }
    if (q + len > end) { bad("der: truncated"); }
    return { tag: tag, p: p, start: q, end: q + len };
  }
  function kids(b, node) {
    var out = [], p = node.start;
    while (p < node.end) { var k = tlv(b, p, node.end); out.push(k); p = k.end; }
    return out;
  }
  function oid(b, node) {
    if (node.tag !== 0x06) { bad("der: not an OID"); }
    var out = [], v = 0;
    for (var i = node.start; i < node.end; i++) {
      v = v * 128 + (b[i] & 0x7f);
      if (!(b[i] & 0x80)) { out.push(v); v = 0; }
    }
    var first = out.shift();
    return (first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80]).concat(out).join(".");
  }
  function derTime(b, node) {
    var s = String.fromCharCode.apply(null, b.subarray(node.start, node.end)), m;
    var y = -1;
    if (node.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) { y = +m[1] < 50 ? 2000 + +m[1] : 1900 + +m[1]; }
    if (node.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) { y = +m[1]; }
    if (y < 0) { bad("der: bad time"); }
    var t = Date.UTC(y, +m[2] - 1, +m[3], +m[4], +m[5], +m[6]), d = new Date(t);
    if (d.getUTCMonth() !== +m[2] - 1 || d.getUTCDate() !== +m[3] || d.getUTCHours() !== +m[4] || d.getUTCMinutes() !== +m[5] || d.getUTCSeconds() !== +m[6]) {
      bad("der: bad time");
    }
    return t;
  }
  function derString(b, node) {
    var raw = b.subarray(node.start, node.end);
    if (node.tag === 0x1e) { // BMPString
      var s = "";
      for (var i = 0; i + 1 < raw.length; i += 2) { s += String.fromCharCode((raw[i] << 8) | raw[i + 1]); }
      return s;
    }
    if (node.tag === 0x0c) { return utf8strict.decode(raw); }
    return String.fromCharCode.apply(null, raw);
  }
  var NAME_STRINGS = { 0x12: 1, 0x13: 1, 0x14: 1, 0x16: 1, 0x0c: 1, 0x1e: 1 }; // the string types crypto/x509 reads in names
  function nameAttrs(b, node) {
    var out = [];
    kids(b, node).forEach(function (set) {
      var atvs = kids(b, set);
      if (set.tag !== 0x31 || !atvs.length) { bad("x509: invalid RDNSequence"); }
      atvs.forEach(function (atv) {
        var k = kids(b, atv);
        if (atv.tag !== 0x30 || k.length !== 2 || k[0].tag !== 0x06) { bad("x509: invalid RDNSequence: invalid attribute"); }
        if (!NAME_STRINGS[k[1].tag]) { bad("x509: invalid RDNSequence: unsupported string type"); }
        if (k[1].tag === 0x12 && !/^[0-9 ]*$/.test(derString(b, k[1]))) { bad("x509: invalid NumericString"); }
        out.push([oid(b, k[0]), derString(b, k[1])]);
      });
    });
    return out;
  }
  var CURVES = { "1.2.840.10045.3.1.7": ["P-256", 32], "1.3.132.0.34": ["P-384", 48] };
  var OTHER_CURVES = { "1.3.132.0.33": 1, "1.3.132.0.35": 1 }; // P-224, P-521: crypto/x509 reads them, COSE here does not

  // wellFormed walks a DER tree and refuses what crypto/x509's parser refuses, so that a damaged certificate
  // is NO_SIGNING_CERTIFICATE_FOUND here as on the server: constructed nodes hold exactly their children,
  // INTEGERs and OIDs are minimal, BOOLEANs are 0x00 or 0xff, NULL is empty, BIT STRINGs have at most 7
  // unused bits, strings are of their character set and times of their DER form.
  function wellFormed(b, node, depth) {
    if (depth > 24) { bad("der: nested too deep"); }
    var tag = node.tag, c = b.subarray(node.start, node.end), i;
    if (tag & 0x20) { kids(b, node).forEach(function (k) { wellFormed(b, k, depth + 1); }); return; }
    switch (tag) {
      case 0x01: if (c.length !== 1 || (c[0] !== 0 && c[0] !== 0xff)) { bad("der: bad BOOLEAN"); } break;
      case 0x02:
        if (!c.length || (c.length > 1 && ((c[0] === 0 && !(c[1] & 0x80)) || (c[0] === 0xff && (c[1] & 0x80))))) { bad("der: bad INTEGER"); }
        break;
      case 0x03: if (!c.length || c[0] > 7 || (c.length === 1 && c[0] !== 0)) { bad("der: bad BIT STRING"); } break;
      case 0x05: if (c.length) { bad("der: bad NULL"); } break;
      case 0x06:
        if (!c.length || (c[c.length - 1] & 0x80)) { bad("der: bad OID"); }
        for (i = 0; i < c.length; i++) { if (c[i] === 0x80 && (i === 0 || !(c[i - 1] & 0x80))) { bad("der: bad OID"); } }
        break;
      case 0x13:
        for (i = 0; i < c.length; i++) { if (!/[A-Za-z0-9 '()+,\-.\/:=?*&]/.test(String.fromCharCode(c[i]))) { bad("invalid PrintableString"); } }
        break;
      case 0x16: for (i = 0; i < c.length; i++) { if (c[i] > 0x7f) { bad("invalid IA5String"); } } break;
      case 0x0c: try { utf8strict.decode(c); } catch (e) { bad("invalid UTF8String"); } break;
      case 0x17: case 0x18: derTime(b, node); break;
    }
  }
  // DER_EXTENSIONS are the extensions crypto/x509 parses (and refuses when malformed); others it keeps as bytes.
  var DER_EXTENSIONS = { "2.5.29.14": 1, "2.5.29.15": 1, "2.5.29.17": 1, "2.5.29.19": 1, "2.5.29.30": 1, "2.5.29.31": 1,
    "2.5.29.32": 1, "2.5.29.33": 1, "2.5.29.35": 1, "2.5.29.36": 1, "2.5.29.37": 1, "2.5.29.54": 1, "1.3.6.1.5.5.7.1.1": 1 };

  // parseCert reads the parts of a certificate the check uses; the signature over tbs is checked separately.
  function parseCert(der) {
    var top = tlv(der, 0, der.length);
    if (top.tag !== 0x30 || top.end !== der.length) { bad("x509: not a certificate"); }
    var c3 = kids(der, top);
    if (c3.length !== 3 || c3[0].tag !== 0x30 || c3[1].tag !== 0x30 || c3[2].tag !== 0x03) { bad("x509: not a certificate"); }
    wellFormed(der, top, 0);
    var t = kids(der, c3[0]), i = 0;
    if (t[0] && t[0].tag === 0xa0) {
      var ver = kids(der, t[0]);
      if (ver.length !== 1 || ver[0].tag !== 0x02 || ver[0].end - ver[0].start !== 1 || der[ver[0].start] > 2) { bad("x509: malformed version"); }
      i++;
    }
    if (t[i + 1] && !equalBytes(der.subarray(t[i + 1].p, t[i + 1].end), der.subarray(c3[1].p, c3[1].end))) {
      bad("x509: inner and outer signature algorithm identifiers don't match");
    }
    if (t.length < i + 6) { bad("x509: short TBSCertificate"); }
    var serial = t[i], issuer = t[i + 2], validity = kids(der, t[i + 3]), subject = t[i + 4], spki = t[i + 5];
    if (serial.tag !== 0x02 || issuer.tag !== 0x30 || subject.tag !== 0x30 || spki.tag !== 0x30 || validity.length !== 2) { bad("x509: bad TBSCertificate"); }
    var s = der.subarray(serial.start, serial.end);
    if (s.length && (s[0] & 0x80)) { bad("x509: negative serial number"); }
    while (s.length && s[0] === 0) { s = s.subarray(1); }
    var ka = kids(der, spki), alg = kids(der, ka[0]), keyAlg = oid(der, alg[0]), curve = null;
    if (keyAlg === "1.2.840.10045.2.1") {
      var co = alg[1] && alg[1].tag === 0x06 ? oid(der, alg[1]) : "";
      curve = CURVES[co] || null;
      if (!curve && !OTHER_CURVES[co]) { bad("x509: unsupported elliptic curve"); }
    }
    var exts = {};
    for (var j = i + 6; j < t.length; j++) {
      if (t[j].tag !== 0xa3) { continue; }
      kids(der, kids(der, t[j])[0]).forEach(function (e) {
        var ek = kids(der, e), val = ek[ek.length - 1], id = oid(der, ek[0]);
        if (ek.length < 2 || ek.length > 3 || val.tag !== 0x04 || (ek.length === 3 && ek[1].tag !== 0x01)) { bad("x509: malformed extension"); }
        if (exts[id]) { bad("x509: duplicate extension"); }
        exts[id] = der.subarray(val.start, val.end);
        if (DER_EXTENSIONS[id]) {
          var inner = tlv(exts[id], 0, exts[id].length);
          if (inner.end !== exts[id].length) { bad("x509: malformed extension value field"); }
          wellFormed(exts[id], inner, 0);
        }
      });
    }
    var sig = der.subarray(c3[2].start, c3[2].end);
    if (!sig.length || sig[0] !== 0) { bad("x509: bad signature bit string"); }
    return {
      raw: der, tbs: der.subarray(c3[0].p, c3[0].end), sigAlg: oid(der, kids(der, c3[1])[0]), sig: sig.subarray(1),
      serial: s, issuer: der.subarray(issuer.p, issuer.end), subject: der.subarray(subject.p, subject.end),
      subjectAttrs: nameAttrs(der, subject), notBefore: derTime(der, validity[0]), notAfter: derTime(der, validity[1]),
      spki: der.subarray(spki.p, spki.end), keyAlg: keyAlg, curve: curve, exts: exts
    };
  }
  function attr(c, o) { var v = null; c.subjectAttrs.forEach(function (a) { if (a[0] === o) { v = a[1]; } }); return v; }
  function commonName(c) { return attr(c, "2.5.4.3") || ""; }

  // ecdsaRaw turns a DER ECDSA-Sig-Value (RFC 3279) into WebCrypto's r || s.
  function ecdsaRaw(der, size) {
    var top = tlv(der, 0, der.length), k = kids(der, top), out = new Uint8Array(2 * size);
    if (top.tag !== 0x30 || top.end !== der.length || k.length !== 2) { bad("bad ECDSA signature"); }
    k.forEach(function (n, i) {
      var v = der.subarray(n.start, n.end);
      while (v.length > size && v[0] === 0) { v = v.subarray(1); }
      if (n.tag !== 0x02 || v.length > size) { bad("bad ECDSA signature"); }
      out.set(v, (i + 1) * size - v.length);
    });
    return out;
  }
  var CERT_SIG = {
    "1.2.840.10045.4.3.2": ["ECDSA", "SHA-256"], "1.2.840.10045.4.3.3": ["ECDSA", "SHA-384"],
    "1.2.840.113549.1.1.11": ["RSASSA-PKCS1-v1_5", "SHA-256"], "1.2.840.113549.1.1.12": ["RSASSA-PKCS1-v1_5", "SHA-384"]
  };
  // signedBy reports whether issuer's key made c's signature.
  function signedBy(c, issuer) {
    var a = CERT_SIG[c.sigAlg];
    if (!a) { return Promise.resolve(false); }
    var imp = a[0] === "ECDSA" ? { name: "ECDSA", namedCurve: issuer.curve && issuer.curve[0] } : { name: a[0], hash: a[1] };
    if (a[0] === "ECDSA" && !issuer.curve) { return Promise.resolve(false); }
    return subtle.importKey("spki", issuer.spki, imp, false, ["verify"]).then(function (key) {
      var sig = a[0] === "ECDSA" ? ecdsaRaw(c.sig, issuer.curve[1]) : c.sig;
      return subtle.verify(a[0] === "ECDSA" ? { name: "ECDSA", hash: a[1] } : a[0], key, sig, c.tbs);
    }).catch(function () { return false; });
  }

  // ---- COSE_Sign1 (RFC 9052 §4.2).
  var COSE_ALG = { "-7": ["ECDSA", "P-256", "SHA-256", 32], "-35": ["ECDSA", "P-384", "SHA-384", 48], "-37": ["RSA-PSS", null, "SHA-256", 32] };
  // algorithmFor is signing/offline's: the COSE algorithm a key must sign with.
  function algorithmFor(c) {
    if (c.keyAlg === "1.2.840.10045.2.1" && c.curve) { return c.curve[0] === "P-256" ? -7 : -35; }
    if (c.keyAlg === "1.2.840.113549.1.1.1") { return -37; }
    return null;
  }
  function decodeSign1(b) {
    var t = cborDecode(b, { tags: true });
    if (!(t instanceof Tagged) || t.tag !== 18 || !Array.isArray(t.value) || t.value.length !== 4) { bad("not a tagged COSE_Sign1"); }
    var v = t.value;
    if (!(v[0] instanceof Uint8Array) || !(v[1] instanceof Map) || !(v[2] instanceof Uint8Array) || !(v[3] instanceof Uint8Array) || !v[3].length) {
      bad("not a COSE_Sign1");
    }
    var prot = v[0].length ? cborDecode(v[0]) : new Map();
    if (!(prot instanceof Map)) { bad("protected header is not a map"); }
    prot.forEach(function (_, k) { if (v[1].has(k)) { bad("a header is both protected and unprotected"); } });
    return { protectedRaw: v[0], protected: prot, payload: v[2], signature: v[3] };
  }
  // verifySign1 checks msg's signature (RFC 9052 §4.4 Sig_structure, no external data) with spki under alg.
  function verifySign1(msg, spki, alg) {
    var a = COSE_ALG[alg];
    var tbs = cborEncode(["Signature1", msg.protectedRaw, new Uint8Array(0), msg.payload]);
    var imp = a[0] === "ECDSA" ? { name: "ECDSA", namedCurve: a[1] } : { name: "RSA-PSS", hash: a[2] };
    var params = a[0] === "ECDSA" ? { name: "ECDSA", hash: a[2] } : { name: "RSA-PSS", saltLength: a[3] };
    return subtle.importKey("spki", spki, imp, false, ["verify"]).then(function (key) {
      return subtle.verify(params, key, msg.signature, tbs);
    }).catch(function () { return false; });
  }

  // ---- Trust bundle (docs/offline.md "Trust bundle").
  function BundleError(kind, message) { this.kind = kind; this.message = message; }
  function ageText(ms) { // signing/offline roundAge: days and hours, else Go's duration form
    var m = Math.round(ms / 60000);
    if (m >= 1440) { return Math.floor(m / 1440) + "d" + Math.floor((m % 1440) / 60) + "h"; }
    var h = Math.floor(m / 60), mm = m % 60;
    return (h ? h + "h" : "") + mm + "m0s";
  }
  // openBundle is signing/offline.OpenBundle: the bundle's seal checked against the pinned key (never one the
  // bundle carries), its body read canonically, and its dates checked at now (ms).
  function openBundle(signed, sealSpki, now) {
    var seal, msg, body;
    return Promise.resolve().then(function () {
      if (signed.length > 64 << 20) { throw new BundleError("format", "offline: malformed trust bundle: too large"); }
      try { msg = decodeSign1(signed); } catch (e) { throw new BundleError("format", "offline: malformed trust bundle: " + (e.message || e)); }
      seal = parseSPKI(sealSpki);
      return subtle.digest("SHA-256", sealSpki);
    }).then(function (d) {
      var kid = new Uint8Array(d).slice(0, 8), got = msg.protected.get(4);
      if (!(got instanceof Uint8Array) || !equalBytes(got, kid)) {
        throw new BundleError("signature", "offline: trust bundle is not signed by the pinned seal key: it names seal key " +
          (got instanceof Uint8Array ? hex(got) : "") + ", the pinned key is " + hex(kid));
      }
      return verifySign1(msg, sealSpki, seal.alg);
    }).then(function (ok) {
      if (!ok) { throw new BundleError("signature", "offline: trust bundle is not signed by the pinned seal key"); }
      if (msg.protected.get(3) !== BUNDLE_TYPE) { throw new BundleError("format", "offline: malformed trust bundle: content type"); }
      try { body = parseBundleBody(msg.payload); } catch (e) { throw new BundleError("format", "offline: malformed trust bundle: " + (e.message || e)); }
      return subtle.digest("SHA-256", signed);
    }).then(function (d) {
      body.sha256 = hex(new Uint8Array(d));
      checkBundleDates(body, now);
      return body;
    });
  }
  function checkBundleDates(b, now) {
    if (now < b.issued - BUNDLE_SKEW) {
      throw new BundleError("notyet", "offline: trust bundle not yet valid: issued " + iso(b.issued) + ", the clock says " + iso(now));
    }
    if (now >= b.nextUpdate) {
      throw new BundleError("expired", "offline: trust bundle expired at " + iso(b.nextUpdate) + "; it was issued " + iso(b.issued) +
        " (" + ageText(now - b.issued) + " ago): fetch a new one");
    }
  }
  function parseSPKI(spki) {
    var top = tlv(spki, 0, spki.length), k = kids(spki, top), alg = kids(spki, k[0]), keyAlg = oid(spki, alg[0]), curve = null;
    if (keyAlg === "1.2.840.10045.2.1") { curve = CURVES[oid(spki, alg[1])] || null; }
    var a = algorithmFor({ keyAlg: keyAlg, curve: curve });
    if (a === null) { bad("unsupported seal key"); }
    return { alg: a };
  }
  function parseBundleBody(b) {
    var f = fields(cborDecode(b, { depth: 8 }), { 1: "uint", 2: "uint", 3: "uint", 4: "array", 5: "array", 6: "array", 7: "array", 8: "array" }, "bundle");
    function ders(a) { return (a || []).map(function (x) { if (!(x instanceof Uint8Array)) { bad("certificate is not a byte string"); } return x; }); }
    var roots = ders(f[4]), inters = ders(f[5]), tsas = ders(f[6]), ocsp = ders(f[7]);
    var revoked = (f[8] || []).map(function (r) {
      if (!Array.isArray(r) || r.length !== 3 || typeof r[0] !== "number" || r[0] < 0 || !(r[1] instanceof Uint8Array) ||
        typeof r[2] !== "number") { bad("revoked entry"); }
      return r;
    });
    var canon = new Map([[1, f[1] || 0], [2, f[2] || 0], [3, f[3] || 0], [4, roots], [5, inters], [6, tsas], [7, ocsp], [8, revoked]]);
    if (!equalBytes(cborEncode(canon), b)) { bad("not in canonical CBOR"); }
    if (f[1] !== 1 || !(f[3] > f[2]) || !roots.length || !inters.length) { bad("version, dates, roots or intermediates"); }
    var out = { issued: f[2] * 1000, nextUpdate: f[3] * 1000, roots: roots.map(parseCert), intermediates: inters.map(parseCert),
      intermediateDER: inters, revoked: {}, revokedCount: revoked.length };
    revoked.forEach(function (r, i) {
      if (r[0] >= inters.length || !r[1].length || r[1].length > 20 || r[1][0] === 0) { bad("revoked entry " + i); }
      if (i > 0) {
        var p = revoked[i - 1], c = p[0] - r[0];
        if (!c) { for (var j = 0; j < Math.min(p[1].length, r[1].length) && !c; j++) { c = p[1][j] - r[1][j]; } if (!c) { c = p[1].length - r[1].length; } }
        if (c >= 0) { bad("revoked entries not sorted"); }
      }
      out.revoked[r[0] + ":" + hex(r[1])] = r[2] * 1000;
    });
    return out;
  }

  // ---- The check: signing/offline.Verify, step by step and in the same order.
  var KU_CONTENT_COMMITMENT = 2; // Go's x509.KeyUsageContentCommitment: bit 1 of the keyUsage BIT STRING
  function keyUsage(c) {
    var v = c.exts["2.5.29.15"];
    if (!v) { return 0; }
    var n = tlv(v, 0, v.length), bs = v.subarray(n.start, n.end), ku = 0;
    if (n.tag !== 0x03 || !bs.length) { return -1; }
    for (var i = 0; i < 9; i++) {
      var byteI = 1 + (i >> 3);
      if (byteI < bs.length && (bs[byteI] & (0x80 >> (i & 7)))) { ku |= 1 << i; }
    }
    return ku;
  }
  // admissionNumber reads the registration number of the first profession of the first admission
  // (internal/hixext.ParseAdmission).
  function admissionNumber(c) {
    var v = c.exts["1.3.36.8.3.3"];
    if (!v) { return null; }
    try {
      var top = tlv(v, 0, v.length), contents = kids(v, kids(v, top)[0]), adm = kids(v, contents[0]);
      if (adm[0].tag === 0xa1) { adm = adm.slice(1); }
      var pi = kids(v, kids(v, adm[0])[0]);
      if (!kids(v, pi[0]).length) { return null; }
      var reg = pi[1];
      return reg && reg.tag === 0x13 ? derString(v, reg) : "";
    } catch (e) { return null; }
  }
  function physician(c) {
    if (keyUsage(c) !== KU_CONTENT_COMMITMENT) { return { why: "signing certificate keyUsage must be contentCommitment only" }; }
    var sn = attr(c, "2.5.4.5");
    if (!sn || sn.indexOf("IDCIR-") !== 0) { return { why: "signing certificate has no national code in subject serialNumber" }; }
    var nc = nationalCode(sn.slice(6));
    if (!nc) { return { why: "national code in signing certificate is not valid" }; }
    var reg = admissionNumber(c);
    if (reg === null) { return { why: "signing certificate: admission extension: malformed" }; }
    var cn = councilNumber(reg);
    if (!cn) { return { why: "council number in signing certificate is not valid" }; }
    return { name: commonName(c), nationalCode: nc, councilNumber: cn };
  }

  // verify checks text against an opened bundle at now (ms) and resolves to a report:
  // {indication, subIndication, reason, payload, signer, bundle}. It never rejects.
  function verify(text, bundle, now) {
    var rep = { indication: "", subIndication: "", reason: "", offline: true, browser: true };
    var msg, leaf, alg, path = [];
    function done(sub, reason) {
      rep.subIndication = sub || ""; rep.reason = reason || ""; rep.indication = indicationOf(sub);
      return rep;
    }
    rep.bundle = { issued: iso(bundle.issued), nextUpdate: iso(bundle.nextUpdate), ageMs: now - bundle.issued, revoked: bundle.revokedCount, sha256: bundle.sha256 };
    if (now < bundle.issued - BUNDLE_SKEW || now >= bundle.nextUpdate) {
      try { checkBundleDates(bundle, now); } catch (e) { return Promise.resolve(done("TRY_LATER", e.message)); }
    }
    return Promise.resolve().then(function () {
      var raw;
      try { raw = decodeText(text, bundle.intermediateDER); } catch (e) {
        if (e instanceof Failure) { throw e; }
        fail("FORMAT_FAILURE", "offline: not a Mohr offline prescription: " + (e.message || e));
      }
      try { msg = decodeSign1(raw); } catch (e) { fail("FORMAT_FAILURE", "not a COSE_Sign1: " + (e.message || e)); }
      alg = msg.protected.get(1);
      if (typeof alg !== "number") { fail("FORMAT_FAILURE", "no algorithm in the protected header"); }
      var der = msg.protected.get(33);
      if (!(der instanceof Uint8Array)) { fail("NO_SIGNING_CERTIFICATE_FOUND", "no signing certificate (x5chain) in the protected header"); }
      try { leaf = parseCert(der); } catch (e) { fail("NO_SIGNING_CERTIFICATE_FOUND", "signing certificate: " + (e.message || e)); }
      rep.signer = { subjectCN: commonName(leaf), serial: hex(leaf.serial) };
      // crypto/x509 refuses a key it cannot read (an EC point off its curve, say): so does WebCrypto's import.
      var imp = leaf.curve ? { name: "ECDSA", namedCurve: leaf.curve[0] } : leaf.keyAlg === "1.2.840.113549.1.1.1" ? { name: "RSA-PSS", hash: "SHA-256" } : null;
      return imp ? subtle.importKey("spki", leaf.spki, imp, false, ["verify"]).then(function () { return true; }, function () { return false; }) : true;
    }).then(function (readable) {
      if (!readable) { fail("NO_SIGNING_CERTIFICATE_FOUND", "signing certificate: the public key cannot be read"); }
      if (algorithmFor(leaf) !== alg || !COSE_ALG[String(alg)]) { fail("CRYPTO_CONSTRAINTS_FAILURE", "algorithm " + alg + " does not fit the signing key"); }
      return verifySign1(msg, leaf.spki, alg);
    }).then(function (ok) {
      if (!ok) { fail("SIG_CRYPTO_FAILURE", "the signature does not verify"); }
      try { rep.payload = parsePayload(msg.payload); } catch (e) { fail("FORMAT_FAILURE", e.message || String(e)); }
      return buildPath(leaf, bundle);
    }).then(function (p) {
      path = p;
      if (!path) { fail("NO_CERTIFICATE_CHAIN_FOUND", "no chain to the trust bundle's CAs"); }
      var at = leaf.notBefore + 1000;
      path.forEach(function (c) {
        if (at < c.notBefore || at > c.notAfter) { fail("CERTIFICATE_CHAIN_GENERAL_FAILURE", "certificate \"" + commonName(c) + "\" is not valid when the signing certificate was issued"); }
      });
      rep.chain = path.map(function (c) { return commonName(c); });
      path.forEach(function (c) {
        if (now < c.notBefore || now > c.notAfter) {
          fail("OUT_OF_BOUNDS_NO_POE", "certificate \"" + commonName(c) + "\" is not valid at " + iso(Math.floor(now / 1000) * 1000) +
            " and an offline check has no proof of existence");
        }
      });
      var pr = physician(leaf);
      if (pr.why) { fail("CHAIN_CONSTRAINTS_FAILURE", pr.why); }
      rep.prescriber = pr;
      var idx = bundle.intermediates.indexOf(path[1]), at2 = idx >= 0 ? bundle.revoked[idx + ":" + hex(leaf.serial)] : undefined;
      if (at2 !== undefined) {
        fail("REVOKED_NO_POE", "signing certificate revoked at " + iso(at2) + " (trust bundle of " + iso(bundle.issued) + ")");
      }
      if (rep.payload.prescriber !== pr.councilNumber) { fail("SIG_CONSTRAINTS_FAILURE", "the payload's council number is not the signer's"); }
      return done("", "");
    }).catch(function (e) {
      if (e instanceof Failure) { return done(e.sub, e.reason); }
      return done("FORMAT_FAILURE", String(e && e.message || e));
    });
  }

  // buildPath finds [leaf, intermediate, root] (or [leaf, root]) by name and signature in the bundle: the
  // browser's stand-in for crypto/x509's path building. It applies no name, policy or path-length constraints.
  function buildPath(leaf, bundle) {
    function isCA(c) {
      var v = c.exts["2.5.29.19"];
      if (!v) { return false; }
      var k = kids(v, tlv(v, 0, v.length));
      return !!(k[0] && k[0].tag === 0x01 && v[k[0].start] === 0xff);
    }
    function findIssuer(c, pool, needCA) {
      var cands = pool.filter(function (i) { return equalBytes(i.subject, c.issuer) && (!needCA || isCA(i)); });
      return cands.reduce(function (acc, i) {
        return acc.then(function (found) { return found || signedBy(c, i).then(function (ok) { return ok ? i : null; }); });
      }, Promise.resolve(null));
    }
    return findIssuer(leaf, bundle.roots, false).then(function (root) {
      if (root) { return [leaf, root]; }
      return findIssuer(leaf, bundle.intermediates, true).then(function (inter) {
        if (!inter) { return null; }
        return findIssuer(inter, bundle.roots, false).then(function (r) { return r ? [leaf, inter, r] : null; });
      });
    });
  }

  // ---- The cached bundle.
  // loadBundle returns {bundle, fetched} from localStorage when it opens with the pinned key and is in its
  // dates and younger than REFRESH_MS, else fetches GET /trust-bundle, opens it and caches it; when the fetch
  // fails (no network), a cached bundle still in its dates is used. A cached bundle that does not open is
  // removed.
  function loadBundle(sealSpki, now) {
    var cached = null;
    try { cached = JSON.parse(localStorage.getItem(CACHE_KEY) || "null"); } catch (e) { cached = null; }
    var fromCache = cached && cached.bundle ? openBundle(b64decode(cached.bundle), sealSpki, now).then(function (b) {
      return { bundle: b, fetched: cached.fetched, cached: true };
    }, function (e) {
      if (!(e instanceof BundleError) || e.kind !== "expired") { try { localStorage.removeItem(CACHE_KEY); } catch (x) { /* ignore */ } }
      return { error: e };
    }) : Promise.resolve(null);
    return fromCache.then(function (c) {
      if (c && c.bundle && now - c.fetched < REFRESH_MS) { return c; }
      return fetch("/trust-bundle", { cache: "no-store", credentials: "same-origin" }).then(function (resp) {
        if (!resp.ok) { throw new Error("GET /trust-bundle: " + resp.status); }
        return resp.arrayBuffer();
      }).then(function (buf) {
        var signed = new Uint8Array(buf);
        return openBundle(signed, sealSpki, now).then(function (b) {
          try { localStorage.setItem(CACHE_KEY, JSON.stringify({ bundle: b64encode(signed), fetched: now })); } catch (e) { /* no storage: this page only */ }
          return { bundle: b, fetched: now, cached: false };
        });
      }).catch(function (e) {
        if (c && c.bundle) { return c; }
        if (e instanceof BundleError) { return { error: e }; }
        return c && c.error ? c : { error: new BundleError("network", String(e && e.message || e)) };
      });
    });
  }

  // ---- The page.
  function digits(lang, s) { return lang === "fa" ? String(s).replace(/[0-9]/g, function (d) { return String.fromCharCode(0x06F0 + +d); }) : String(s); }
  function age(lang, ms) { // as the server's age() in api/web/offline.go
    var m = Math.max(0, Math.round(ms / 60000)), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), hh = Math.floor(m / 60), mm = m % 60, s;
    if (lang === "fa") { s = m < 60 ? mm + " دقیقه" : m < 2880 ? hh + " ساعت و " + mm + " دقیقه" : d + " روز و " + h + " ساعت"; }
    else { s = m < 60 ? mm + " min" : m < 2880 ? hh + " h " + mm + " min" : d + " days " + h + " h"; }
    return digits(lang, s);
  }
  // when writes a time as "2026-12-03 07:00 UTC" with Latin digits, isolated left to right (U+2066..U+2069)
  // so that it reads the same inside Persian text.
  function when(ms) { return "\u2066" + iso(ms).slice(0, 16).replace("T", " ") + " UTC\u2069"; }
  function fill(tpl, vars) { return tpl.replace(/\{(\w+)\}/g, function (_, k) { return vars[k] !== undefined ? vars[k] : ""; }); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  var state = { loading: null, result: null };
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll("[data-bcheck]")); }
  function showStatus() {
    var r = state.result;
    boxes().forEach(function (box) {
      var lang = box.getAttribute("data-lang"), st = box.querySelector("[data-bstatus]");
      if (!r) { st.textContent = box.getAttribute("data-t-loading"); box.setAttribute("data-state", "loading"); return; }
      if (r.error) {
        box.setAttribute("data-state", r.error.kind === "network" ? "none" : "refused");
        st.textContent = r.error.kind === "network" ? box.getAttribute("data-t-none") : fill(box.getAttribute("data-t-refused"), { reason: r.error.message });
        return;
      }
      var now = Date.now();
      box.setAttribute("data-state", "ready");
      st.textContent = fill(box.getAttribute("data-t-ready"), {
        issued: when(r.bundle.issued), age: age(lang, now - r.bundle.issued), next: when(r.bundle.nextUpdate),
        revoked: digits(lang, r.bundle.revokedCount)
      });
    });
  }
  function load() {
    var box = boxes()[0];
    if (!box || !subtle) { return Promise.resolve(null); }
    var seal = b64decode(box.getAttribute("data-seal-key"));
    state.loading = loadBundle(seal, Date.now()).then(function (r) { state.result = r; showStatus(); return r; });
    return state.loading;
  }
  function render(box, rep) {
    var lang = box.getAttribute("data-lang"), out = box.querySelector("[data-bresult]");
    out.textContent = "";
    var cls = rep.indication === "TOTAL_PASSED" ? "passed" : rep.indication === "TOTAL_FAILED" ? "failed" : "undetermined";
    var v = el("div", "verdict small-verdict " + cls);
    v.setAttribute("data-indication", rep.indication);
    v.setAttribute("data-sub", rep.subIndication);
    v.appendChild(el("h3", null, box.getAttribute("data-t-" + cls)));
    v.appendChild(el("p", null, box.getAttribute("data-t-browser")));
    out.appendChild(v);
    var dl = el("dl", "bfacts");
    function row(k, val) { if (val) { dl.appendChild(el("dt", null, box.getAttribute("data-t-" + k))); dl.appendChild(el("dd", null, val)); } }
    row("indication", rep.indication + (rep.subIndication ? " / " + rep.subIndication : ""));
    if (rep.reason) { row("reason", rep.reason); }
    if (rep.indication === "TOTAL_PASSED") {
      row("prescriber", rep.prescriber.name + " (" + digits(lang, rep.prescriber.councilNumber) + ")");
      row("patient", digits(lang, rep.payload.patient));
      row("issued", when(rep.payload.issued * 1000));
    }
    if (rep.bundle) { row("bundle", fill(box.getAttribute("data-t-bundleage"), { issued: when(Date.parse(rep.bundle.issued)), age: age(lang, rep.bundle.ageMs) })); }
    out.appendChild(dl);
    if (rep.indication === "TOTAL_PASSED") {
      var ol = el("ol", "meds");
      rep.payload.medicines.forEach(function (m) {
        var li = el("li");
        li.appendChild(el("span", "med", m.code));
        li.appendChild(el("span", "dose", m.dosage));
        if (m.quantity) { li.appendChild(el("span", "qty", digits(lang, m.quantity + " " + m.unit))); }
        ol.appendChild(li);
      });
      out.appendChild(ol);
    }
  }
  function check(box) {
    var text = box.closest("form").querySelector("textarea").value, out = box.querySelector("[data-bresult]");
    if (!text.trim()) { out.textContent = box.getAttribute("data-t-empty"); return Promise.resolve(null); }
    out.textContent = box.getAttribute("data-t-working");
    return (state.loading || load()).then(function (r) {
      var now = Date.now();
      if (!r || r.error) {
        var msg = r && r.error ? r.error.message : "no trust bundle";
        var rep = { indication: "INDETERMINATE", subIndication: "TRY_LATER", reason: msg };
        render(box, rep);
        return rep;
      }
      try { checkBundleDates(r.bundle, now); } catch (e) {
        var rep2 = { indication: "INDETERMINATE", subIndication: "TRY_LATER", reason: e.message, refused: true };
        render(box, rep2);
        return rep2;
      }
      return verify(text, r.bundle, now).then(function (rep3) { render(box, rep3); showStatus(); return rep3; });
    });
  }

  window.MohrOffline = { verify: verify, openBundle: openBundle, loadBundle: loadBundle, check: check, load: load, cacheKey: CACHE_KEY };

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
  function init() {
    var bs = boxes();
    if (!bs.length) { return; }
    if (!subtle) { // WebCrypto needs a secure context (HTTPS, or this machine); the server's check remains
      bs.forEach(function (box) {
        box.hidden = false;
        box.setAttribute("data-state", "insecure");
        box.querySelector("[data-bstatus]").textContent = box.getAttribute("data-t-insecure");
        box.querySelector("[data-bverify]").disabled = true;
      });
      return;
    }
    bs.forEach(function (box) {
      box.hidden = false;
      box.querySelector("[data-bverify]").addEventListener("click", function () { check(box); });
    });
    showStatus();
    load();
  }
})();

package signing

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
)

// TestArchiveTimestampV3 checks B-LTA with archive-time-stamp-v3 and ats-hash-index-v3 (EN 319 122-1 §5.5.2):
// one and two (renewed) archive timestamps pass; validation data added after an archive timestamp is allowed;
// every covered element removed or altered, a forged index, a renewal that does not cover the previous archive
// timestamp and a private-OID archive timestamp are refused.
func TestArchiveTimestampV3(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	blt := f.toBLT(t, f.toBT(t, f.signBB(t, f.doc, f.physician)), f.doc)
	f.pki.Clock.Advance(24 * time.Hour)
	lta, err := AddArchiveTimestamp(ctx, blt, f.tsa)
	if err != nil {
		t.Fatal(err)
	}
	f.pki.Clock.Advance(24 * time.Hour)
	lta2, err := AddArchiveTimestamp(ctx, lta, f.tsa)
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifier(t, func(c *VerifierConfig) { c.Revocation = nil })
	sd, err := parseOne(lta2)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := findAttr(sd.signers[0].unsignedAttrs, derOID(oidArchiveTimestampV3)); n != 2 {
		t.Fatalf("%d archive-time-stamp-v3 attributes", n)
	}
	// Validation data for the archive TSA added after the archive timestamp: allowed (not in its index).
	sdx, _ := parseOne(lta2)
	withMore, err := rebuild(sdx, [][]byte{f.pki.Root.Raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"one": lta, "two": lta2, "certificate added later": withMore} {
		t.Run(name, func(t *testing.T) {
			r := v.Verify(ctx, der)
			if !r.Passed() || r.Level != "B-LTA" {
				t.Fatal(r.Summary())
			}
			n := 0
			for _, ti := range r.Timestamps {
				if ti.Type == "archive" && ti.Valid {
					n++
				}
			}
			if n != bytes.Count(der, derOID(oidArchiveTimestampV3)) {
				t.Fatalf("%d archive timestamps reported", n)
			}
		})
	}

	refuse := func(t *testing.T, der []byte, want SubIndication) {
		t.Helper()
		r := v.Verify(ctx, der)
		if r.Passed() || r.SubIndication != want {
			t.Fatalf("want %s, got %s", want, r.Summary())
		}
	}
	t.Run("covered certificate removed", func(t *testing.T) {
		sd, _ := parseOne(lta2)
		var keep [][]byte
		for _, c := range sd.certs {
			if !bytes.Equal(c, f.pki.Responder.Cert.Raw) {
				keep = append(keep, c)
			}
		}
		sd.certs = keep
		der, err := rebuild(sd, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		refuse(t, der, HashFailure)
	})
	t.Run("covered revocation values replaced", func(t *testing.T) {
		f.pki.Clock.Advance(time.Hour)
		other := f.toBLT(t, f.toBT(t, f.signBB(t, f.doc, f.physician)), f.doc) // a later OCSP response
		osd, _ := parseOne(other)
		ra, _ := findAttr(osd.signers[0].unsignedAttrs, dRevocationVals)
		sd, _ := parseOne(lta2)
		var attrs []rawAttr
		for _, a := range sd.signers[0].unsignedAttrs {
			if bytes.Equal(a.oid, dRevocationVals) {
				a = *ra
			}
			attrs = append(attrs, a)
		}
		sd.signers[0].unsignedAttrs = attrs
		der, err := rebuild(sd, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		refuse(t, der, HashFailure)
	})
	t.Run("index replaced by a smaller one", func(t *testing.T) {
		// An index that names only elements still present, but not the one that was time-stamped: the imprint
		// no longer matches.
		sd, _ := parseOne(lta)
		a, _ := findAttr(sd.signers[0].unsignedAttrs, dArchiveTS)
		tok, _ := a.single()
		tsd, _ := parseOne(tok)
		small := *sd
		small.certs = sd.certs[:len(sd.certs)-1]
		small.signers = []signerInfo{sd.signers[0]}
		small.signers[0].unsignedAttrs = nil
		for _, u := range sd.signers[0].unsignedAttrs {
			if !bytes.Equal(u.oid, dArchiveTS) {
				small.signers[0].unsignedAttrs = append(small.signers[0].unsignedAttrs, u)
			}
		}
		idx, err := buildHashIndex(&small)
		if err != nil {
			t.Fatal(err)
		}
		tsd.signers[0].unsignedAttrs = nil
		newTok, err := rebuild(tsd, nil, [][]byte{attribute(oidATSHashIndexV3, func(b *cryptobyte.Builder) { b.AddBytes(idx) })})
		if err != nil {
			t.Fatal(err)
		}
		sd.signers[0].unsignedAttrs = small.signers[0].unsignedAttrs
		der, err := rebuild(sd, nil, [][]byte{attribute(oidArchiveTimestampV3, func(b *cryptobyte.Builder) { b.AddBytes(newTok) })})
		if err != nil {
			t.Fatal(err)
		}
		refuse(t, der, NoPOE)
	})
	t.Run("renewal that does not cover the previous archive timestamp", func(t *testing.T) {
		f.pki.Clock.Advance(time.Hour)
		side, err := AddArchiveTimestamp(ctx, blt, f.tsa) // made over the B-LT, not over lta
		if err != nil {
			t.Fatal(err)
		}
		ssd, _ := parseOne(side)
		sa, _ := findAttr(ssd.signers[0].unsignedAttrs, dArchiveTS)
		sd, _ := parseOne(lta)
		der, err := rebuild(sd, nil, [][]byte{sa.raw})
		if err != nil {
			t.Fatal(err)
		}
		refuse(t, der, NoPOE)
	})
	t.Run("archive timestamp without hash index", func(t *testing.T) {
		sd, _ := parseOne(lta)
		a, _ := findAttr(sd.signers[0].unsignedAttrs, dArchiveTS)
		tok, _ := a.single()
		tsd, _ := parseOne(tok)
		tsd.signers[0].unsignedAttrs = nil
		bare, _ := rebuild(tsd, nil, nil)
		var attrs []rawAttr
		for _, u := range sd.signers[0].unsignedAttrs {
			if !bytes.Equal(u.oid, dArchiveTS) {
				attrs = append(attrs, u)
			}
		}
		sd.signers[0].unsignedAttrs = attrs
		der, _ := rebuild(sd, nil, [][]byte{attribute(oidArchiveTimestampV3, func(b *cryptobyte.Builder) { b.AddBytes(bare) })})
		refuse(t, der, FormatFailure)
	})

	// Outside checks: OpenSSL accepts the B-LTA as CMS, and the archive timestamp token over the imprint the
	// index and the signature give.
	openssl := testenv.Tool(t, "openssl")
	dir := t.TempDir()
	root, _ := f.pki.WritePEM(dir)
	out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, dir, "lta.p7s", lta2),
		"-CAfile", root, "-purpose", "any", "-attime", "1772359200", "-out", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	ats, err := archiveTimestamps(sd)
	if err != nil || len(ats) != 2 {
		t.Fatal(err)
	}
	for i, a := range ats {
		in, err := archiveImprintInput(sd, crypto.SHA256, a.idx.raw)
		if err != nil {
			t.Fatal(err)
		}
		sum, n := digestOf(crypto.SHA256, in)
		out, err := exec.Command(openssl, "ts", "-verify", "-token_in", "-in", writeFile(t, dir, "ats.der", a.token),
			"-digest", hex.EncodeToString(sum[:n]), "-CAfile", root, "-untrusted", writeChain(t, dir, f)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl ts -verify, archive timestamp %d: %v\n%s", i+1, err, out)
		}
		sum[0] ^= 1
		out, err = exec.Command(openssl, "ts", "-verify", "-token_in", "-in", writeFile(t, dir, "ats.der", a.token),
			"-digest", hex.EncodeToString(sum[:n]), "-CAfile", root, "-untrusted", writeChain(t, dir, f)).CombinedOutput()
		if err == nil && strings.Contains(string(out), "Verification: OK") {
			t.Fatal("openssl ts -verify accepted a wrong imprint")
		}
	}
}

func writeChain(t *testing.T, dir string, f *fixture) string {
	t.Helper()
	p := dir + "/tsa-chain.pem"
	if err := testpki.WriteCerts(p, f.tsaLeaf.Cert, f.pki.Intermediate); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchiveRenewalOverYears runs the clock over nine years (the test PKI's intermediate lives ten) with a TSA certificate that lives one year and is
// replaced each year: RenewalDue says when, AddArchiveTimestamp renews, and at every step the prescription
// verifies as B-LTA. Without renewal the chain breaks (checked at the end by dropping one renewal).
func TestArchiveRenewalOverYears(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	der := f.toBLT(t, f.toBT(t, f.signBB(t, f.doc, f.physician)), f.doc)
	v := f.verifier(t, func(c *VerifierConfig) { c.Revocation = nil })
	tsas := v.Trust().TSAs
	const window = 60 * 24 * time.Hour
	start := f.pki.Clock.Now()
	tsaUntil := f.tsaLeaf.Cert.NotAfter
	renewals := 0
	var history [][]byte
	for f.pki.Clock.Now().Before(start.AddDate(9, 0, 0)) {
		f.pki.Clock.Advance(7 * 24 * time.Hour)
		now := f.pki.Clock.Now()
		if !now.Before(tsaUntil.Add(-90 * 24 * time.Hour)) { // the TSA rotates its certificate 90 days before expiry
			leaf, err := f.pki.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA", NotBefore: now, NotAfter: now.AddDate(1, 0, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if f.tsa, err = NewTSA(leaf.Key, leaf.Chain, TSAConfig{Policy: tsaPolicy, Accuracy: time.Second, Now: f.pki.Clock.Now}); err != nil {
				t.Fatal(err)
			}
			f.tsaLeaf, tsaUntil = leaf, leaf.Cert.NotAfter
			tsas = append(tsas, TrustedTSA{Cert: leaf.Cert}) // the rotated TSA joins the trust list
			v = f.verifier(t, func(c *VerifierConfig) { c.Revocation = nil; c.Trust.TSAs = tsas })
		}
		due, st, err := RenewalDue(der, now, window, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !now.Add(window).Before(st.TSANotAfter) != due {
			t.Fatalf("due %v with TSA certificate until %s", due, st.TSANotAfter)
		}
		if due {
			if der, err = AddArchiveTimestamp(ctx, der, f.tsa); err != nil {
				t.Fatal(err)
			}
			renewals++
			history = append(history, der)
			if due, _, _ := RenewalDue(der, now, window, nil); due {
				t.Fatal("still due right after renewal")
			}
		}
		if r := v.Verify(ctx, der); !r.Passed() || (renewals > 0 && r.Level != "B-LTA") {
			t.Fatalf("year %.1f, %d renewals: %s", now.Sub(start).Hours()/24/365, renewals, r.Summary())
		}
	}
	if renewals < 8 {
		t.Fatalf("only %d renewals in nine years", renewals)
	}
	// A renewal made after the previous archive TSA's certificate expired does not count.
	late := history[0]
	sd, _ := parseOne(late)
	ats, _ := archiveTimestamps(sd)
	f.pki.Clock.Set(ats[0].tsa.NotAfter.Add(24 * time.Hour))
	leaf, err := f.pki.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA", NotBefore: f.pki.Clock.Now(), NotAfter: f.pki.Clock.Now().AddDate(1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	tsa, _ := NewTSA(leaf.Key, leaf.Chain, TSAConfig{Policy: tsaPolicy, Accuracy: time.Second, Now: f.pki.Clock.Now})
	late, err = AddArchiveTimestamp(ctx, late, tsa)
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(ctx, late); r.Passed() || r.SubIndication != NoPOE {
		t.Fatalf("renewal after expiry: %s", r.Summary())
	}
}

// TestRenewalDueAlgorithmSunset: renewal is also due when an algorithm the newest archive timestamp relies on
// (its SHA-256 imprint and signature digest, the TSA's P-256 key) reaches the end date of its AlgorithmRule
// minus the window, long before the TSA certificate expires; an algorithm no rule admits makes it due at once.
// The clock is the test PKI's, advanced day by day.
func TestRenewalDueAlgorithmSunset(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	der := f.toBLT(t, f.toBT(t, f.signBB(t, f.doc, f.physician)), f.doc)
	var err error
	if der, err = AddArchiveTimestamp(ctx, der, f.tsa); err != nil {
		t.Fatal(err)
	}
	const window = 60 * 24 * time.Hour
	start := f.pki.Clock.Now()
	sunset := start.AddDate(0, 0, 200)
	if !f.tsaLeaf.Cert.NotAfter.After(sunset.Add(window)) {
		t.Fatalf("the TSA certificate (until %s) must outlive the sunset for this test", f.tsaLeaf.Cert.NotAfter)
	}
	open := []AlgorithmRule{{Name: "sha256"}, {Name: "sha384"}, {Name: "ecdsa-p256"}, {Name: "ecdsa-p384"}}
	with := func(rules ...AlgorithmRule) *TrustPolicy {
		p := f.trust()
		p.Algorithms = rules
		return p
	}
	for _, c := range []struct {
		name   string
		policy *TrustPolicy
		end    time.Time // zero: never due before the TSA certificate's expiry
	}{
		{"no sunset", with(open...), time.Time{}},
		{"default algorithms", nil, time.Time{}},
		{"sha256 digest ends", with(AlgorithmRule{Name: "sha256", NotAfter: sunset}, open[1], open[2], open[3]), sunset},
		{"p256 key ends", with(open[0], open[1], AlgorithmRule{Name: "ecdsa-p256", NotAfter: sunset}, open[3]), sunset},
		{"latest rule counts", with(AlgorithmRule{Name: "sha256", NotAfter: sunset}, AlgorithmRule{Name: "sha256", NotAfter: sunset.AddDate(0, 0, 40)}, open[1], open[2], open[3]), sunset.AddDate(0, 0, 40)},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantNext := f.tsaLeaf.Cert.NotAfter.Add(-window)
			if !c.end.IsZero() {
				wantNext = c.end.Add(-window)
			}
			if next, err := NextArchiveDueUnder(der, window, c.policy); err != nil || !next.Equal(wantNext) {
				t.Fatalf("NextArchiveDueUnder %s, %v; want %s", next, err, wantNext)
			}
			f.pki.Clock.Set(start)
			for f.pki.Clock.Now().Before(start.AddDate(2, 0, 0)) && f.pki.Clock.Now().Add(window).Before(f.tsaLeaf.Cert.NotAfter) {
				now := f.pki.Clock.Now()
				due, st, err := RenewalDue(der, now, window, c.policy)
				if err != nil {
					t.Fatal(err)
				}
				want := !c.end.IsZero() && !now.Add(window).Before(c.end)
				if due != want {
					t.Fatalf("at %s: due %v, want %v (algorithms until %s)", now.Format(time.DateOnly), due, want, st.AlgorithmsNotAfter)
				}
				if !st.AlgorithmsNotAfter.Equal(c.end) {
					t.Fatalf("AlgorithmsNotAfter %s, want %s", st.AlgorithmsNotAfter, c.end)
				}
				f.pki.Clock.Advance(24 * time.Hour)
			}
		})
	}
	// Fail closed: a key type no rule admits (P-256 dropped) makes renewal due now.
	due, _, err := RenewalDue(der, start, window, with(open[0], open[1], open[3]))
	if err != nil || !due {
		t.Fatalf("P-256 not admitted: due %v, %v", due, err)
	}
	if next, err := NextArchiveDueUnder(der, window, with(open[0], open[1], open[3])); err != nil || next.After(start) {
		t.Fatalf("P-256 not admitted: next due %s, %v", next, err)
	}
}

package signing

// The conformance corpus generator: real signing code plus deliberate corruptions, deterministic (the clock is
// pinned and testing/cryptotest fixes every key and signature), written to testdata/corpus with a manifest
// of the expected indication and sub-indication of each file. `go test -run TestCorpus -update ./signing`
// regenerates it; TestCorpus (corpus_test.go) checks the verifier, OpenSSL and `mohr verify` against it.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// corpusEntry is one line of testdata/corpus/manifest.json.
type corpusEntry struct {
	File          string        `json:"file"`
	Content       string        `json:"content,omitempty"` // detached (PAdES) rows: the file of the signed bytes
	Indication    Indication    `json:"indication"`
	SubIndication SubIndication `json:"subIndication,omitempty"`
	Tests         string        `json:"tests"`
}

// corpusNow is the validation time of the corpus: two hours after t0, when it was made.
var corpusNow = t0.Add(2 * time.Hour)

// gen builds the corpus.
type gen struct {
	t       *testing.T
	f       *fixture
	entries []corpusEntry
	files   map[string][]byte
	// tsas is the corpus's TSA trust list.
	tsas []*x509.Certificate
	// digestAlg, when set, is the digestAlgorithm signAttrList writes (the attributes stay SHA-256).
	digestAlg []byte
}

func (g *gen) add(name string, der []byte, sub SubIndication, tests string) {
	g.entries = append(g.entries, corpusEntry{File: name + ".p7s", Indication: sub.Indication(), SubIndication: sub, Tests: tests})
	g.files[name+".p7s"] = der
}

func (g *gen) addDetached(name string, der, content []byte, sub SubIndication, tests string) {
	g.entries = append(g.entries, corpusEntry{File: name + ".p7s", Content: name + ".bin", Indication: sub.Indication(), SubIndication: sub, Tests: tests})
	g.files[name+".p7s"] = der
	g.files[name+".bin"] = content
}

func (g *gen) at(d time.Duration) { g.f.pki.Clock.Set(t0.Add(d)) }

// must stops the generator on err (a generator bug, not a verification result).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// physicianTemplate is testpki's physician-signing profile, for certificates the generator bends.
func (g *gen) physicianTemplate(ph rxgen.Physician) *x509.Certificate {
	ext := must(hixext.Admission{Authority: "Iran Medical Council", Profession: "Physician", RegistrationNumber: ph.CouncilNumber}.Extension())
	pol := must(x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3}))
	return &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), // replaced below
		Subject:      pkix.Name{CommonName: "Dr. " + ph.Given + " " + ph.Family, Country: []string{"IR"}, SerialNumber: hixext.NationalCodePrefix + ph.NationalCode},
		NotBefore:    t0.Add(-time.Hour), NotAfter: t0.AddDate(1, 0, 0), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageContentCommitment, ExtraExtensions: []pkix.Extension{ext}, Policies: []x509.OID{pol},
	}
}

var corpusSerial int64 = 1000

// issue signs tmpl for pub under parent (the intermediate when nil) and returns a leaf with key.
func (g *gen) issue(tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) *testpki.Leaf {
	if parent == nil {
		parent, parentKey = g.f.pki.Intermediate, g.f.pki.InterKey
	}
	corpusSerial++
	tmpl.SerialNumber = big.NewInt(corpusSerial)
	der := must(x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey))
	c := must(x509.ParseCertificate(der))
	l := &testpki.Leaf{Cert: c, Chain: []*x509.Certificate{c, g.f.pki.Intermediate}}
	if ek, ok := key.(*ecdsa.PrivateKey); ok {
		l.Key = ek
	}
	return l
}

// signWith signs a prescription for ph with key and chain at the clock's time.
func (g *gen) signWith(key crypto.Signer, chain []*x509.Certificate, ph rxgen.Physician, o SignOptions) []byte {
	content := must(g.f.gen.Prescription(ph))
	o.Signer, o.Chain, o.Now = key, chain, g.f.pki.Clock.Now
	return must(Sign(context.Background(), content, o))
}

// blt makes der B-LT at the usual time line: timestamp at t0+1m, OCSP for the signer and the TSA and the root's
// CRL at t0+2m. extraOCSP replace the signer's response when given.
func (g *gen) blt(der []byte, signer *x509.Certificate, signerOCSP ...[]byte) []byte {
	g.at(time.Minute)
	bt := must(AddSignatureTimestamp(context.Background(), der, g.f.tsa))
	g.at(2 * time.Minute)
	return g.addVD(bt, signer, signerOCSP...)
}

func (g *gen) addVD(der []byte, signer *x509.Certificate, signerOCSP ...[]byte) []byte {
	if signerOCSP == nil {
		signerOCSP = [][]byte{must(g.f.pki.OCSP(signer))}
	}
	vd := ValidationData{OCSPs: append(signerOCSP, must(g.f.pki.OCSP(g.f.tsaLeaf.Cert))),
		CRLs: [][]byte{must(g.f.pki.RootCRL())}, Certs: [][]byte{g.f.pki.Responder.Cert.Raw, g.f.tsaLeaf.Cert.Raw}}
	return must(AddValidationData(der, vd))
}

// rxAttrs returns the signed attributes Sign writes for content and cert, by name, for the corruption rows.
func rxAttrs(content []byte, cert *x509.Certificate, at time.Time) (names []string, attrs map[string][]byte) {
	md := sha256Sum(content)
	digestAlg := algIDBytes(oidSHA256, false)
	sigAlg := algIDBytes(oidECDSASHA256, false)
	attrs = map[string][]byte{
		"content-type":           attribute(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) }),
		"message-digest":         attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(md[:]) }),
		"signing-time":           attribute(oidAttrSigningTime, func(b *cryptobyte.Builder) { utcOrGeneralized(b, at) }),
		"signing-certificate-v2": signingCertV2Attr(cert, crypto.SHA256),
		"algorithm-protection": attribute(oidAttrAlgProtection, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(digestAlg)
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(sigAlg[2:]) })
			})
		}),
		"mime-type": attribute(oidAttrMimeType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(MIMEFHIRJSON)) })
		}),
		"commitment-type": attribute(oidAttrCommitmentType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidCommitmentOrigin) })
		}),
		"signature-policy": policyAttr(RxPolicy()),
	}
	names = []string{"content-type", "message-digest", "signing-time", "signing-certificate-v2", "algorithm-protection", "mime-type", "commitment-type", "signature-policy"}
	return names, attrs
}

// signAttrList builds an enveloping SignedData over content with exactly the attribute TLVs given, signed by
// leaf (ECDSA P-256, SHA-256). eContentType overrides id-data when set; detached leaves content out.
func (g *gen) signAttrList(content []byte, leaf *testpki.Leaf, attrs [][]byte, eContentType asn1.ObjectIdentifier, detached bool) []byte {
	digestAlg := algIDBytes(oidSHA256, false)
	if g.digestAlg != nil {
		digestAlg = g.digestAlg
	}
	sigAlg := algIDBytes(oidECDSASHA256, false)
	set := setOf(attrs)
	sig := must(signAttrs(leaf.Key, crypto.SHA256, crypto.SHA256, set))
	si := signerInfoParts{sid: issuerAndSerial(leaf.Cert.RawIssuer, leaf.Cert.SerialNumber), digestAlg: digestAlg, signedAttrs: set, sigAlg: sigAlg, signature: sig}
	if eContentType == nil {
		eContentType = oidData
	}
	sd := signedDataParts{digestAlgs: [][]byte{digestAlg}, eContentType: eContentType, content: content, signerInfos: [][]byte{si.marshal()},
		certs: [][]byte{leaf.Cert.Raw, g.f.pki.Intermediate.Raw}}
	if detached {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(eContentType) })
		sd.eContentRaw = b.BytesOrPanic()
	}
	return must(sd.marshal())
}

// rogueOCSP is a "good" response for cert signed by responder/key, claiming to be about the intermediate's cert.
func (g *gen) rogueOCSP(cert, responder *x509.Certificate, key crypto.Signer) []byte {
	now := g.f.pki.Clock.Now()
	return must(ocsp.CreateResponse(g.f.pki.Intermediate, responder, ocsp.Response{Status: ocsp.Good, SerialNumber: cert.SerialNumber,
		ThisUpdate: now, NextUpdate: now.Add(time.Hour), ProducedAt: now, Certificate: responder, IssuerHash: crypto.SHA256}, key))
}

// idpExtension is a critical issuing distribution point naming url (RFC 5280 §5.2.5), as Mohr's sharded CRLs
// carry (ca/revocation).
func idpExtension(url string) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(url)) })
			})
		})
	})
	return pkix.Extension{Id: oidIDP, Critical: true, Value: b.BytesOrPanic()}
}

// shardCRL is a CRL of the intermediate for the shard at url, listing revoked (serial -> time).
func (g *gen) shardCRL(url string, revoked map[*big.Int]time.Time) []byte {
	now := g.f.pki.Clock.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(now.Unix()), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{idpExtension(url)}}
	for s, at := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: at})
	}
	return must(x509.CreateRevocationList(rand.Reader, tmpl, g.f.pki.Intermediate, g.f.pki.InterKey))
}

// withUnsigned returns der with its SignerInfo's unsigned attributes replaced by attrs (raw TLVs).
func (g *gen) withUnsigned(der []byte, attrs ...[]byte) []byte {
	sd := must(parseOne(der))
	sd.signers[0].unsignedAttrs = nil
	return must(rebuild(sd, nil, attrs))
}

// generateCorpus makes every row. Keys and signatures are deterministic under cryptotest.SetGlobalRandom.
func generateCorpus(t *testing.T) *gen {
	f := newFixture(t)
	g := &gen{t: t, f: f, files: map[string][]byte{}, tsas: []*x509.Certificate{f.tsaLeaf.Cert}}
	ctx := context.Background()
	ph := f.physician
	doc := f.doc

	// ---- baseline levels ----
	g.at(0)
	bb := f.signBB(t, doc, ph)
	g.add("level-bb", bb, TryLater, "B-B with no revocation data and no way to fetch: INDETERMINATE/TRY_LATER (policy §5.8)")
	g.at(time.Minute)
	bt := f.toBT(t, bb)
	g.add("level-bt", bt, TryLater, "B-T without revocation values: TRY_LATER offline")
	g.at(2 * time.Minute)
	blt := g.addVD(bt, doc.Cert)
	g.add("level-blt", blt, "", "B-LT with OCSP for signer and TSA and the root's CRL for the intermediate: TOTAL_PASSED")
	g.add("blt-384", g.blt(g.signWith(doc.Key, doc.Chain, ph, SignOptions{Hash: crypto.SHA384}), doc.Cert), "", "SHA-384 digest with P-256 key: acceptable (policy §3)")

	// ---- every signed attribute missing, duplicated, wrong ----
	g.at(0)
	content := must(f.gen.Prescription(ph))
	names, attrs := rxAttrs(content, doc.Cert, t0)
	missingSub := map[string]SubIndication{"content-type": FormatFailure, "message-digest": FormatFailure, "signing-time": FormatFailure,
		"signing-certificate-v2": FormatFailure, "algorithm-protection": FormatFailure, "mime-type": SigConstraintsFailure,
		"commitment-type": SigConstraintsFailure, "signature-policy": SigConstraintsFailure}
	other := must(f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Other"}))
	wrong := map[string][]byte{
		"content-type":           attribute(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidSignedData) }),
		"message-digest":         attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(make([]byte, 32)) }),
		"signing-time":           attribute(oidAttrSigningTime, func(b *cryptobyte.Builder) { b.AddASN1Int64(20260301) }),
		"signing-certificate-v2": signingCertV2Attr(other.Cert, crypto.SHA256),
		"algorithm-protection": attribute(oidAttrAlgProtection, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(algIDBytes(oidSHA384, false))
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(algIDBytes(oidECDSASHA256, false)[2:]) })
			})
		}),
		"mime-type": attribute(oidAttrMimeType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte("text/plain")) })
		}),
		"commitment-type": attribute(oidAttrCommitmentType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 6, 2})
			})
		}),
		"signature-policy": policyAttr(SignaturePolicy{OID: RxPolicy().OID, Hash: make([]byte, 32)}),
	}
	wrongSub := map[string]SubIndication{"content-type": FormatFailure, "message-digest": HashFailure, "signing-time": FormatFailure,
		"signing-certificate-v2": NoSigningCertificateFound, "algorithm-protection": SigCryptoFailure, "mime-type": SigConstraintsFailure,
		"commitment-type": SigConstraintsFailure, "signature-policy": SigConstraintsFailure}
	for _, n := range names {
		var miss, dup, bad [][]byte
		for _, m := range names {
			if m != n {
				miss = append(miss, attrs[m])
				bad = append(bad, attrs[m])
			} else {
				bad = append(bad, wrong[m])
			}
			dup = append(dup, attrs[m])
		}
		dup = append(dup, attrs[n])
		g.add("attr-missing-"+n, g.signAttrList(content, doc, miss, nil, false), missingSub[n], "signed attribute "+n+" missing")
		g.add("attr-duplicated-"+n, g.signAttrList(content, doc, dup, nil, false), FormatFailure, "signed attribute "+n+" twice (RFC 5652 §5.3)")
		g.add("attr-wrong-"+n, g.signAttrList(content, doc, bad, nil, false), wrongSub[n], "signed attribute "+n+" with a wrong value")
	}
	var all [][]byte
	for _, n := range names {
		all = append(all, attrs[n])
	}
	g.add("econtenttype-not-data", g.signAttrList(content, doc, append(all[1:], wrong["content-type"]), oidSignedData, false), FormatFailure,
		"eContentType id-signedData (content-type attribute agreeing): wrong content type")
	g.add("detached-as-prescription", g.signAttrList(content, doc, all, nil, true), SignedDataNotFound, "a detached CAdES signature is not a prescription (policy §2)")

	// ---- keys and algorithms ----
	rsa1024 := must(rsa.GenerateKey(rand.Reader, 1024))
	rsa2048 := must(rsa.GenerateKey(rand.Reader, 2048))
	p224 := must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	p521 := must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	for _, k := range []struct {
		name string
		key  crypto.Signer
		sub  SubIndication
		why  string
	}{
		{"key-rsa1024", rsa1024, CryptoConstraintsFailure, "RSA-1024 prescriber key (policy: RSA >= 2048)"},
		{"key-p224", p224, CryptoConstraintsFailure, "ECDSA P-224 prescriber key (policy: P-256 or P-384)"},
		{"key-p521", p521, CryptoConstraintsFailure, "ECDSA P-521 prescriber key (not in the policy)"},
		{"key-rsa2048", rsa2048, "", "RSA-2048 prescriber key, B-LT: acceptable until the end of 2030"},
		{"key-p384", p384, "", "ECDSA P-384 prescriber key, B-LT"},
	} {
		g.at(0)
		l := g.issue(g.physicianTemplate(ph), k.key, nil, nil)
		der := g.signWith(k.key, l.Chain, ph, SignOptions{})
		if k.sub == "" {
			der = g.blt(der, l.Cert)
		}
		g.add(k.name, der, k.sub, k.why)
	}
	g.at(0)
	sha1attrs := [][]byte{}
	for _, n := range names {
		sha1attrs = append(sha1attrs, attrs[n])
	}
	g.digestAlg = algIDBytes(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, false)
	sha1doc := g.signAttrList(content, doc, sha1attrs, nil, false)
	g.digestAlg = nil
	g.add("digest-sha1", sha1doc, CryptoConstraintsFailure, "SHA-1 digest algorithm (refused by the policy)")

	// ---- signer constraints: only a prescriber under a configured signer CA ----
	g.at(0)
	for _, p := range []struct {
		name    string
		profile testpki.Profile
	}{{"signer-tsa-cert", testpki.TSA}, {"signer-seal", testpki.OrganisationSeal}, {"signer-ocsp-responder", testpki.OCSPResponder}, {"signer-facility-adapter", testpki.FacilityAdapter}} {
		l := must(f.pki.Issue(p.profile, testpki.LeafOptions{CommonName: p.name, SIAMID: "12345678", Licence: "L-1"}))
		g.add(p.name, g.blt(g.signWith(l.Key, l.Chain, ph, SignOptions{}), l.Cert), ChainConstraintsFailure, "a "+p.name[len("signer-"):]+" certificate as prescriber, B-LT")
	}
	bend := func(name, why string, mod func(*x509.Certificate)) {
		g.at(0)
		key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		tmpl := g.physicianTemplate(ph)
		mod(tmpl)
		l := g.issue(tmpl, key, nil, nil)
		g.add(name, g.blt(g.signWith(key, l.Chain, ph, SignOptions{}), l.Cert), ChainConstraintsFailure, why)
	}
	bend("signer-tls-server", "a TLS server certificate as prescriber", func(c *x509.Certificate) {
		c.KeyUsage, c.ExtKeyUsage, c.DNSNames, c.ExtraExtensions, c.Policies = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"rx.example"}, nil, nil
	})
	bend("signer-no-policy-oid", "physician-signing profile without the certificate policy OID", func(c *x509.Certificate) { c.Policies = nil })
	bend("signer-eku-clientauth", "physician-signing certificate with a conflicting EKU (clientAuth)", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	bend("signer-ku-digitalsignature", "keyUsage digitalSignature+contentCommitment (policy: contentCommitment only)", func(c *x509.Certificate) {
		c.KeyUsage |= x509.KeyUsageDigitalSignature
	})
	bend("signer-bad-national-code", "national code with a wrong check digit in subject serialNumber", func(c *x509.Certificate) {
		c.Subject.SerialNumber = hixext.NationalCodePrefix + "0499370898"
	})
	bend("signer-no-council-number", "no admission extension (no council number)", func(c *x509.Certificate) { c.ExtraExtensions = nil })
	// A rogue intermediate under the same root with the intermediate's name and extensions, another key.
	rogueKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rogueT := *f.pki.Intermediate
	rogueT.SerialNumber, rogueT.PublicKey, rogueT.SubjectKeyId, rogueT.AuthorityKeyId = big.NewInt(999), nil, nil, nil
	rogueT.Raw, rogueT.RawTBSCertificate, rogueT.RawSubjectPublicKeyInfo, rogueT.Signature = nil, nil, nil, nil
	rogueInter := must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, &rogueT, f.pki.Root, rogueKey.Public(), f.pki.RootKey))))
	g.at(0)
	rkey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rleaf := g.issue(g.physicianTemplate(ph), rkey, rogueInter, rogueKey)
	rchain := []*x509.Certificate{rleaf.Cert, rogueInter}
	g.add("signer-rogue-intermediate", g.signWith(rkey, rchain, ph, SignOptions{}), ChainConstraintsFailure,
		"prescriber issued by a rogue intermediate under the root with the intermediate's name and extensions copied")
	foreign := must(testpki.New(t0))
	fph := f.gen.Physician()
	fl := must(foreign.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. Foreign", NationalCode: fph.NationalCode, CouncilNumber: fph.CouncilNumber}))
	g.add("signer-foreign-root", g.signWith(fl.Key, fl.Chain, fph, SignOptions{}), NoCertificateChainFound, "prescriber under another root")

	// ---- the time line: revoked, held, released, with and without timestamps ----
	timeline := func(name string, sub SubIndication, why string, status func(l *testpki.Leaf), stamp bool) {
		g.at(0)
		nph := f.gen.Physician()
		l := f.issuePhysician(t, nph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour)})
		der := f.signBB(t, l, nph)
		status(l)
		if stamp {
			der = g.blt(der, l.Cert)
		} else {
			g.at(2 * time.Minute)
			der = g.addVD(der, l.Cert)
		}
		g.add(name, der, sub, why)
	}
	timeline("revoked-before-signing-no-ts", RevokedNoPOE, "revoked before signing, OCSP embedded, no timestamp", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(-time.Minute), 1)
	}, false)
	timeline("revoked-before-ts", Revoked, "revoked 30 s after signing, before the signature timestamp", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(30*time.Second), 1)
	}, true)
	timeline("revoked-after-ts", "", "revoked after the signature timestamp (OCSP says revoked): the signature stands", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(90*time.Second), 1)
	}, true)
	timeline("held-before-ts", Revoked, "on hold (certificateHold) before the timestamp", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(30*time.Second), ocsp.CertificateHold)
	}, true)
	timeline("held-no-ts", RevokedNoPOE, "on hold, no timestamp", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(-time.Minute), ocsp.CertificateHold)
	}, false)
	timeline("held-after-ts", "", "put on hold after the timestamp: the signature stands", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(90*time.Second), ocsp.CertificateHold)
	}, true)
	timeline("released-before-ocsp", "", "held, then released before the OCSP response: good", func(l *testpki.Leaf) {
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(30*time.Second), ocsp.CertificateHold)
		f.pki.Revoke(l.Cert.SerialNumber, t0.Add(24*time.Hour), ocsp.CertificateHold) // released: not revoked as of the OCSP
	}, true)
	timeline("good-no-ts", TryLater, "good, no timestamp, embedded OCSP older than the validation time (no POE): TRY_LATER offline", func(*testpki.Leaf) {}, false)
	// Stale OCSP: produced before the timestamp.
	g.at(0)
	sph := f.gen.Physician()
	sl := f.issuePhysician(t, sph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour)})
	g.at(-10 * time.Minute)
	stale := must(f.pki.OCSP(sl.Cert))
	g.at(0)
	sbb := f.signBB(t, sl, sph)
	g.add("ocsp-stale", g.blt(sbb, sl.Cert, stale), TryLater, "the only OCSP response was produced before the timestamp (minus 5 min skew)")
	// Expiry and not-yet-valid.
	g.at(0)
	eph := f.gen.Physician()
	el := f.issuePhysician(t, eph, testpki.LeafOptions{NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.Add(-time.Hour)})
	g.add("expired-at-ts", g.blt(f.signBB(t, el, eph), el.Cert), Expired, "signing certificate expired before the timestamp")
	g.at(0)
	nyph := f.gen.Physician()
	nyl := f.issuePhysician(t, nyph, testpki.LeafOptions{NotBefore: t0.Add(time.Hour), NotAfter: t0.AddDate(1, 0, 0)})
	g.add("not-yet-valid-at-ts", g.blt(f.signBB(t, nyl, nyph), nyl.Cert), NotYetValid, "signing certificate not yet valid at the timestamp")
	g.at(0)
	shph := f.gen.Physician()
	shl := f.issuePhysician(t, shph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)})
	g.at(2 * time.Minute)
	g.add("expired-no-poe", g.addVD(f.signBB(t, shl, shph), shl.Cert), OutOfBoundsNoPOE, "valid when signed, expired at validation, no timestamp")

	// ---- CRLs: Mohr's sharded CRLs with an issuing distribution point ----
	shard := func(name string, sub SubIndication, why string, dp, idp string, revoked bool) {
		g.at(0)
		key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		tmpl := g.physicianTemplate(ph)
		tmpl.CRLDistributionPoints = []string{dp}
		l := g.issue(tmpl, key, nil, nil)
		der := g.signWith(key, l.Chain, ph, SignOptions{})
		g.at(time.Minute)
		bt := must(AddSignatureTimestamp(ctx, der, f.tsa))
		g.at(2 * time.Minute)
		rev := map[*big.Int]time.Time{}
		if revoked {
			rev[l.Cert.SerialNumber] = t0.Add(30 * time.Second)
		}
		vd := ValidationData{OCSPs: [][]byte{must(f.pki.OCSP(f.tsaLeaf.Cert))}, CRLs: [][]byte{must(f.pki.RootCRL()), g.shardCRL(idp, rev)},
			Certs: [][]byte{f.pki.Responder.Cert.Raw, f.tsaLeaf.Cert.Raw}}
		g.add(name, must(AddValidationData(bt, vd)), sub, why)
	}
	shard("crl-shard-good", "", "status from the certificate's CRL shard (critical IDP naming its DP), good", "http://crl.example/3.crl", "http://crl.example/3.crl", false)
	shard("crl-shard-revoked", Revoked, "revoked before the timestamp on its CRL shard", "http://crl.example/3.crl", "http://crl.example/3.crl", true)
	shard("crl-wrong-shard", TryLater, "only another shard's CRL (IDP does not name the certificate's DP): no status", "http://crl.example/3.crl", "http://crl.example/4.crl", true)
	// The intermediate revoked on the root's CRL.
	{
		g.at(0)
		iph := f.gen.Physician()
		il := f.issuePhysician(t, iph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour)})
		der := f.signBB(t, il, iph)
		f.pki.Revoke(f.pki.Intermediate.SerialNumber, t0.Add(30*time.Second), 1)
		g.add("intermediate-revoked", g.blt(der, il.Cert), RevokedCANoPOE, "the issuing CA (of the signer and of the TSA) revoked on the root's CRL before the timestamp")
		f.pki.Revoke(f.pki.Intermediate.SerialNumber, t0.AddDate(100, 0, 0), 1) // un-revoke for the rest
	}

	// ---- rogue TSAs ----
	g.at(0)
	frTSA := must(foreign.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Rogue TSA"}))
	ftsa := must(NewTSA(frTSA.Key, frTSA.Chain, TSAConfig{Policy: tsaPolicy, Now: f.pki.Clock.Now}))
	bb0 := f.signBB(t, doc, ph)
	g.at(time.Minute)
	g.add("tsa-foreign", must(AddSignatureTimestamp(ctx, bb0, ftsa)), NoPOE, "timestamp from a TSA under another root")
	untrusted := must(f.pki.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Unlisted TSA"}))
	utsa := must(NewTSA(untrusted.Key, untrusted.Chain, TSAConfig{Policy: tsaPolicy, Now: f.pki.Clock.Now}))
	g.add("tsa-not-on-trust-list", must(AddSignatureTimestamp(ctx, bb0, utsa)), NoPOE,
		"timestamp from a TSA issued by the intermediate but not on the TSA trust list (could backdate a revoked physician)")
	// A listed TSA whose certificate has expired since it stamped: the timestamp still counts.
	g.at(0)
	expiredTSALeaf := must(f.pki.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA (short)", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.Add(30 * time.Minute)}))
	g.tsas = append(g.tsas, expiredTSALeaf.Cert)
	etsa := must(NewTSA(expiredTSALeaf.Key, expiredTSALeaf.Chain, TSAConfig{Policy: tsaPolicy, Now: f.pki.Clock.Now}))
	g.at(time.Minute)
	ebt := must(AddSignatureTimestamp(ctx, bb0, etsa))
	g.at(2 * time.Minute)
	evd := ValidationData{OCSPs: [][]byte{must(f.pki.OCSP(doc.Cert)), must(f.pki.OCSP(expiredTSALeaf.Cert))}, CRLs: [][]byte{must(f.pki.RootCRL())},
		Certs: [][]byte{f.pki.Responder.Cert.Raw, expiredTSALeaf.Cert.Raw}}
	g.add("tsa-expired-since", must(AddValidationData(ebt, evd)), "", "the TSA's certificate expired after it stamped (before validation): the timestamp still counts")
	{
		g.at(0)
		tph := f.gen.Physician()
		tl := f.issuePhysician(t, tph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour)})
		der := f.signBB(t, tl, tph)
		f.pki.Revoke(f.tsaLeaf.Cert.SerialNumber, t0.Add(30*time.Second), 1)
		g.add("tsa-revoked", g.blt(der, tl.Cert), NoPOE, "the TSA's certificate revoked before its timestamp (OCSP for the TSA embedded)")
		f.pki.Revoke(f.tsaLeaf.Cert.SerialNumber, t0.AddDate(100, 0, 0), 1)
	}
	multi := attribute(oidAttrSigTimeStamp, func(b *cryptobyte.Builder) {})
	{
		sd := must(parseOne(bt))
		tok, _ := sd.signers[0].unsignedAttrs[0].single()
		multi = attribute(oidAttrSigTimeStamp, func(b *cryptobyte.Builder) { b.AddBytes(tok); b.AddBytes(tok) })
		g.add("ts-multivalued", g.withUnsigned(bt, multi), FormatFailure, "signature-time-stamp attribute with two values (item 9: FORMAT_FAILURE, not NO_POE)")
		one := sd.signers[0].unsignedAttrs[0].raw
		g.add("ts-too-many", g.withUnsigned(bt, one, one, one, one, one), FormatFailure, "five signature timestamps (over the policy's limit of 4)")
	}
	g.at(time.Minute)
	futureBB := must(Sign(ctx, content, SignOptions{Signer: doc.Key, Chain: doc.Chain, Now: func() time.Time { return t0.Add(24 * time.Hour) }}))
	g.add("signing-time-after-ts", g.blt(futureBB, doc.Cert), TimestampOrderFailure, "signing-time a day after the signature timestamp")

	// ---- rogue OCSP responders (a revoked physician made to look good) ----
	rogueResp := func(name, why string, responder *x509.Certificate, key crypto.Signer) {
		g.at(0)
		oph := f.gen.Physician()
		ol := f.issuePhysician(t, oph, testpki.LeafOptions{NotBefore: t0.Add(-time.Hour)})
		der := f.signBB(t, ol, oph)
		f.pki.Revoke(ol.Cert.SerialNumber, t0.Add(30*time.Second), 1)
		g.at(2 * time.Minute)
		forged := g.rogueOCSP(ol.Cert, responder, key)
		g.at(0)
		g.add(name, g.blt(der, ol.Cert, forged), TryLater, why)
	}
	rrKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rrT := &x509.Certificate{Subject: pkix.Name{CommonName: "Rogue Responder"}, NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}
	rogueByRoot := g.issue(rrT, rrKey, f.pki.Root, f.pki.RootKey)
	rogueResp("ocsp-responder-by-root", "a 'good' OCSP answer for a revoked physician from a responder the root (not the issuing CA) certified", rogueByRoot.Cert, rrKey)
	rrT2 := *rrT
	rrT2.ExtKeyUsage = nil
	noEKU := g.issue(&rrT2, rrKey, nil, nil)
	rogueResp("ocsp-responder-no-eku", "a 'good' answer from a certificate of the issuing CA without id-kp-OCSPSigning", noEKU.Cert, rrKey)
	rrT3 := *rrT // OCSPSigning from the issuing CA, but no id-pkix-ocsp-nocheck: its own status is unknown
	noCheck := g.issue(&rrT3, rrKey, nil, nil)
	rogueResp("ocsp-responder-no-nocheck", "a 'good' answer from a delegated responder without id-pkix-ocsp-nocheck", noCheck.Cert, rrKey)
	sealResp := must(f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Seal as responder"}))
	rogueResp("ocsp-responder-seal", "a 'good' answer signed with a seal certificate", sealResp.Cert, sealResp.Key)

	// ---- PAdES (detached CMS over the PDF's /ByteRange bytes) ----
	pdfBytes := []byte("%PDF-1.7 byte range of a prescription printout")
	g.at(0)
	pad := must(Sign(ctx, pdfBytes, SignOptions{Signer: doc.Key, Chain: doc.Chain, Now: f.pki.Clock.Now, PAdES: true}))
	g.addDetached("pades-blt", g.blt(pad, doc.Cert), pdfBytes, "", "PAdES-style detached B-LT by the physician: TOTAL_PASSED")
	g.addDetached("pades-content-changed", g.blt(pad, doc.Cert), append([]byte("X"), pdfBytes[1:]...), HashFailure, "PAdES: signed bytes changed")
	tlsKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tlsT := &x509.Certificate{Subject: pkix.Name{CommonName: "rx.example"}, DNSNames: []string{"rx.example"}, NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	tlsLeaf := g.issue(tlsT, tlsKey, nil, nil)
	g.at(0)
	padTLS := must(Sign(ctx, pdfBytes, SignOptions{Signer: tlsKey, Chain: tlsLeaf.Chain, Now: f.pki.Clock.Now, PAdES: true}))
	g.addDetached("pades-tls-signer", g.blt(padTLS, tlsLeaf.Cert), pdfBytes, ChainConstraintsFailure, "PAdES signed with a TLS server certificate (item 4)")
	padResp := must(Sign(ctx, pdfBytes, SignOptions{Signer: f.pki.Responder.Key, Chain: f.pki.Responder.Chain, Now: f.pki.Clock.Now, PAdES: true}))
	g.addDetached("pades-ocsp-signer", padResp, pdfBytes, ChainConstraintsFailure, "PAdES signed with the OCSP responder's certificate")
	pmd := sha256Sum(pdfBytes)
	padAttrs := [][]byte{attrs["content-type"], attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(pmd[:]) }), attrs["algorithm-protection"]}
	g.addDetached("pades-no-signing-cert-v2", g.signAttrList(nil, doc, padAttrs, nil, true), pdfBytes, FormatFailure, "PAdES without signing-certificate-v2")
	g.addDetached("pades-signing-time", g.signAttrList(nil, doc, append(padAttrs, attrs["signing-time"], attrs["signing-certificate-v2"]), nil, true), pdfBytes,
		FormatFailure, "PAdES with a signing-time attribute (EN 319 142-1 forbids it)")

	// ---- format, tampering, sizes ----
	g.add("truncated", blt[:len(blt)-1], FormatFailure, "B-LT truncated by one byte")
	g.add("trailing-garbage", append(bytes.Clone(blt), 0), FormatFailure, "a byte after the ContentInfo")
	g.add("empty", []byte{}, FormatFailure, "empty file")
	bltContent := must(Content(blt))
	g.add("content-changed", flip(t, blt, bltContent[:40], 20), HashFailure, "one byte of the prescription changed")
	_, sig := signatureOf(t, blt)
	g.add("signature-changed", flip(t, blt, sig, len(sig)-3), SigCryptoFailure, "one byte of the signature value changed")
	g.add("oversized-attributes", adversarialCMS(1<<20), FormatFailure, "1 MiB CMS of 80,000 tiny signed attributes: refused in microseconds")
	many := make([][]byte, 0, 20)
	for i := 0; i < 20; i++ {
		many = append(many, must(f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "filler"})).Cert.Raw)
	}
	sdm := must(parseOne(bb))
	g.add("too-many-certificates", must(rebuild(sdm, many, nil)), FormatFailure, "22 certificates (over the policy's limit of 16)")
	{
		badCode := bytes.Replace(content, []byte(`"value":"`), []byte(`"value":"x`), 1)
		g.at(0)
		bc := must(Sign(ctx, badCode, SignOptions{Signer: doc.Key, Chain: doc.Chain, Now: f.pki.Clock.Now}))
		g.add("domain-bad-patient-code", g.blt(bc, doc.Cert), SigConstraintsFailure, "patient national code malformed (health-domain check)")
		other := f.gen.Physician()
		g.at(0)
		oc := must(f.gen.Prescription(other))
		om := must(Sign(ctx, oc, SignOptions{Signer: doc.Key, Chain: doc.Chain, Now: f.pki.Clock.Now}))
		g.add("domain-practitioner-not-signer", g.blt(om, doc.Cert), SigConstraintsFailure, "the prescription's practitioner is another physician than the signer")
	}
	return g
}

// adversarialCMS is a SignedData whose SignerInfo carries as many tiny signed attributes as fit in size bytes
// (issue 12 item 8: 80,000 attributes in 1 MiB took 18 s).
func adversarialCMS(size int) []byte {
	attr := []byte{0x30, 0x0b, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x31, 0x04, 0x04, 0x02, 0x00, 0x00} // 13 bytes
	n := (size - 200) / len(attr)
	set := bytes.Repeat(attr, n)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(algIDBytes(oidSHA256, false)) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1OctetString([]byte("{}")) })
				})
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {})
							b.AddASN1Int64(1)
						})
						b.AddBytes(algIDBytes(oidSHA256, false))
						b.AddASN1(tagImplicit0, func(b *cryptobyte.Builder) { b.AddBytes(set) })
						b.AddBytes(algIDBytes(oidECDSASHA256, false))
						b.AddASN1OctetString(make([]byte, 64))
					})
				})
			})
		})
	})
	return b.BytesOrPanic()
}

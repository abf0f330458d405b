package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
	"github.com/mohr-hix/mohr/tokens"
)

// insurerEnv is a node on a fake clock with its API served over mTLS, a physician and an insurer client.
type insurerEnv struct {
	clk      *fakeClock
	n        *node
	gen      *rxgen.Generator
	doc      *rxDoctor
	url      string
	physC    *http.Client
	insurerC *http.Client
	insCert  *x509.Certificate
	insKey   *ecdsa.PrivateKey
}

func newInsurerEnv(t *testing.T) *insurerEnv {
	t.Helper()
	e := &insurerEnv{clk: &fakeClock{t: time.Now().UTC().Truncate(time.Second)}}
	e.n = clockNode(t, e.clk)
	e.gen = rxgen.New(20)
	e.gen.Now = e.clk.Now
	e.doc = newDoctor(t, e.n, e.gen, e.clk.Now())
	srv, err := e.n.apiServer()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = srv.TLSConfig()
	hs.StartTLS()
	t.Cleanup(hs.Close)
	e.url = hs.URL
	client := func(req ca.Request) (*http.Client, *x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := issueFor(context.Background(), e.n.ca, key, req)
		if err != nil {
			t.Fatal(err)
		}
		tr := hs.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
		return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, cert, key
	}
	e.physC, _, _ = client(ca.Request{Profile: ca.ProfilePhysicianAuth, CommonName: "Dr " + e.doc.phy.Family,
		NationalCode: e.doc.phy.NationalCode, CouncilNumber: e.doc.phy.CouncilNumber})
	e.insurerC, e.insCert, e.insKey = client(ca.Request{Profile: ca.ProfileOrganisationAuth, CommonName: "Salamat Insurance API", Role: "insurer"})
	return e
}

// signRx signs a new prescription by the doctor at the clock's time (B-B).
func (e *insurerEnv) signRx(t *testing.T) []byte {
	t.Helper()
	body, err := e.gen.Prescription(e.doc.phy)
	if err != nil {
		t.Fatal(err)
	}
	chain := e.n.ca.Issuer().Chain
	der, err := signing.Sign(context.Background(), body, signing.SignOptions{Signer: e.doc.key,
		Chain: append([]*x509.Certificate{e.doc.cert}, chain[:len(chain)-1]...), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ingest submits der as the physician and returns the stored signature (B-LT) as an insurer reads it back.
func (e *insurerEnv) ingest(t *testing.T, der []byte) (id string, stored []byte) {
	t.Helper()
	e.clk.Add(3 * time.Second)
	resp, err := e.physC.Post(e.url+"/v1/prescriptions", "application/cms", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Report map[string]any `json:"report"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %d %v %v", resp.StatusCode, err, m.Report)
	}
	id, _ = m.Report["contentSha256"].(string)
	var p struct {
		Signature []byte `json:"signature"`
	}
	e.getJSON(t, e.insurerC, "/v1/prescriptions/"+id, http.StatusOK, &p)
	return id, p.Signature
}

func (e *insurerEnv) getJSON(t *testing.T, c *http.Client, path string, want int, v any) {
	t.Helper()
	resp, err := c.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
}

// suspend records the doctor's suspension in the registry as an RA import does, effective now.
func (e *insurerEnv) suspend(t *testing.T) {
	t.Helper()
	now := e.clk.Now()
	if err := e.n.tokens.ImportPhysicians(context.Background(), []tokens.Physician{{NationalCode: e.doc.phy.NationalCode,
		CouncilNo: e.doc.phy.CouncilNumber, Name: e.doc.phy.Given + " " + e.doc.phy.Family, Specialty: e.doc.phy.Specialty,
		Status: tokens.StatusSuspended, ValidFrom: now.AddDate(-5, 0, 0), ValidUntil: now.AddDate(3, 0, 0)}}, "test:ra"); err != nil {
		t.Fatal(err)
	}
}

type verdict struct {
	Indication    string `json:"indication"`
	SubIndication string `json:"subIndication"`
	Reason        string `json:"reason"`
	Name          string `json:"name"`
	Line          int    `json:"line"`
	Prescriber    *struct {
		Registration    string `json:"registration"`
		RegistrationNow string `json:"registrationNow"`
	} `json:"prescriber"`
}

func (e *insurerEnv) verifyAPI(t *testing.T, der []byte) verdict {
	t.Helper()
	resp, err := e.insurerC.Post(e.url+"/v1/verify", "application/cms", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v verdict
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("verify: %d %v", resp.StatusCode, err)
	}
	return v
}

// batchAPI posts NDJSON lines to /v1/verify/batch and returns the result lines by name (summary lines apart).
func (e *insurerEnv) batchAPI(t *testing.T, query, body string) (map[string]verdict, []map[string]any) {
	t.Helper()
	resp, err := e.insurerC.Post(e.url+"/v1/verify/batch"+query, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	out := map[string]verdict{}
	var summaries []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var probe map[string]any
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			t.Fatalf("batch line %q: %v", sc.Text(), err)
		}
		if _, ok := probe["summary"]; ok {
			summaries = append(summaries, probe)
			continue
		}
		var v verdict
		json.Unmarshal(sc.Bytes(), &v)
		out[v.Name] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, summaries
}

func ndjsonLine(name string, der []byte) string {
	b, _ := json.Marshal(map[string]any{"name": name, "cms": der})
	return string(b) + "\n"
}

// TestSuspensionJudgedAtSigningTime is issue 20's first finding: prescriptions signed and time-stamped before a
// physician's suspension still pass after it; those signed after it fail; through /v1/verify and
// /v1/verify/batch as an insurer.
func TestSuspensionJudgedAtSigningTime(t *testing.T) {
	e := newInsurerEnv(t)
	var before, after [][]byte
	for i := 0; i < 3; i++ {
		_, stored := e.ingest(t, e.signRx(t)) // B-LT, timestamped now
		before = append(before, stored)
		e.clk.Add(10 * time.Minute)
	}
	if v := e.verifyAPI(t, before[0]); v.Indication != "TOTAL_PASSED" {
		t.Fatalf("before the suspension: %+v", v)
	}
	e.clk.Add(time.Hour)
	e.suspend(t)
	e.clk.Add(time.Hour)
	for i := 0; i < 2; i++ {
		der, err := signing.AddSignatureTimestamp(context.Background(), e.signRx(t), e.n.tsa) // B-T after the suspension
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, der)
		e.clk.Add(time.Minute)
	}
	e.clk.Add(24 * time.Hour)
	for i, der := range before {
		v := e.verifyAPI(t, der)
		if v.Indication != "TOTAL_PASSED" || v.Prescriber == nil || v.Prescriber.Registration != "active" || v.Prescriber.RegistrationNow != "suspended" {
			t.Errorf("signed before the suspension %d: %+v %+v", i, v, v.Prescriber)
		}
	}
	for i, der := range after {
		v := e.verifyAPI(t, der)
		if v.Indication != "INDETERMINATE" || v.SubIndication != "SIG_CONSTRAINTS_FAILURE" || !strings.Contains(v.Prescriber.Registration, "suspended") {
			t.Errorf("signed after the suspension %d: %+v", i, v)
		}
	}
	var body strings.Builder
	for i, der := range before {
		body.WriteString(ndjsonLine(fmt.Sprintf("before-%d", i), der))
	}
	for i, der := range after {
		body.WriteString(ndjsonLine(fmt.Sprintf("after-%d", i), der))
	}
	got, _ := e.batchAPI(t, "", body.String())
	for name, v := range got {
		want := "TOTAL_PASSED"
		if strings.HasPrefix(name, "after") {
			want = "INDETERMINATE"
		}
		if v.Indication != want {
			t.Errorf("batch %s: %+v", name, v)
		}
	}
	if len(got) != len(before)+len(after) {
		t.Errorf("batch gave %d results", len(got))
	}
	// The history is in the database and the change in the audit log.
	hist, err := e.n.ts.PhysicianHistory(context.Background(), e.doc.phy.NationalCode)
	if err != nil || len(hist) != 2 || hist[1].Status != tokens.StatusSuspended {
		t.Fatalf("history %+v %v", hist, err)
	}
}

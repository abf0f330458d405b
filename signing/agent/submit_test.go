package agent_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
)

// The exchange refuses a prescription (422 with its sealed report): the EMR sees "refused" with the status
// code, the report and a typed error; nothing is counted or audited as submitted; the document is sent once.
func TestExchangeRefusal422NotSubmitted(t *testing.T) {
	e, _ := softEnv(t)
	e.x.struckOff.Store(true)
	doc := e.rx()
	e.startSession(0, 0)
	code, l, _ := e.sign(doc, nil)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("sign answered %d, want 422", code)
	}
	if l.Status != "refused" || l.HTTPStatus != http.StatusUnprocessableEntity || l.Attempts != 1 {
		t.Fatalf("result %+v", l)
	}
	if l.Indication == string(signing.TotalPassed) || l.Indication == "" || len(l.Report) == 0 || len(l.SealedReport) == 0 || len(l.Signature) == 0 {
		t.Fatalf("refusal lacks its evidence: %+v", l)
	}
	if l.Error == nil || l.Error.Code != "refused" || l.Error.Type != "urn:mohr:agent:refused" || l.Error.Detail == "" {
		t.Fatalf("error %+v", l.Error)
	}
	if e.x.stored.Load() != 0 || e.x.requests.Load() != 1 {
		t.Fatalf("stored %d, requests %d", e.x.stored.Load(), e.x.requests.Load())
	}
	recs := e.checkAudit(doc)
	if countEvents(recs, "submit") != 0 || countEvents(recs, "submit-refused") != 1 {
		t.Fatalf("audit %+v", recs)
	}
	for _, r := range recs {
		if r.Event == "submit-refused" && (r.HTTPStatus != 422 || r.Indication == "" || r.Indication == string(signing.TotalPassed)) {
			t.Fatalf("audit record %+v", r)
		}
	}

	// In a batch the summary counts it as refused, not submitted, and the stream line says so.
	_, lines, end, _ := e.batch([][]byte{e.rx(), e.rx()}, nil, nil)
	if end.Submitted != 0 || end.Refused != 2 || end.Signed != 2 || end.Passed != 0 {
		t.Fatalf("summary %+v", end.Summary)
	}
	for _, l := range lines {
		if l.Status != "refused" || l.HTTPStatus != 422 {
			t.Fatalf("line %+v", l)
		}
	}
}

// The exchange fails (503) and then recovers: the agent retries the same document and reports it submitted
// with the final status and the attempts; when it keeps failing, the EMR sees 503 and "signed", not
// submitted, and the audit file says submit-failed with 503.
func TestExchangeFailure503Retried(t *testing.T) {
	e, _ := softEnv(t)
	doc := e.rx()
	e.startSession(0, 0)

	e.x.failNext.Store(2)
	code, l, _ := e.sign(doc, nil)
	if code != http.StatusOK || l.Status != "submitted" || l.HTTPStatus != http.StatusCreated || l.Attempts != 3 {
		t.Fatalf("after two 503s: %d %+v", code, l)
	}
	e.x.bodiesMu.Lock()
	if len(e.x.bodies) != 3 || e.x.bodies[0] != e.x.bodies[1] || e.x.bodies[1] != e.x.bodies[2] {
		t.Fatalf("retries did not send the same document: %d bodies", len(e.x.bodies))
	}
	e.x.bodiesMu.Unlock()
	if e.x.stored.Load() != 1 {
		t.Fatalf("stored %d", e.x.stored.Load())
	}

	e.x.failNext.Store(100)
	code, l, _ = e.sign(e.rx(), nil)
	e.x.failNext.Store(0)
	if code != http.StatusBadGateway || l.Status != "signed" || l.HTTPStatus != http.StatusServiceUnavailable || l.Attempts != 3 {
		t.Fatalf("exchange down: %d %+v", code, l)
	}
	if l.Error == nil || l.Error.Code != "submit_failed" || len(l.Signature) == 0 || l.Indication != "" || len(l.Report) != 0 {
		t.Fatalf("error %+v", l.Error)
	}
	var prob struct {
		Status int `json:"status"`
	}
	if json.Unmarshal(l.ExchangeProblem, &prob) != nil || prob.Status != 503 {
		t.Fatalf("exchange problem %s", l.ExchangeProblem)
	}
	if e.x.stored.Load() != 1 {
		t.Fatalf("stored %d", e.x.stored.Load())
	}
	recs := e.checkAudit(doc)
	if countEvents(recs, "submit") != 1 || countEvents(recs, "submit-failed") != 1 {
		t.Fatalf("audit %+v", recs)
	}
	for _, r := range recs {
		switch r.Event {
		case "submit":
			if r.HTTPStatus != 201 || r.Attempts != 3 {
				t.Fatalf("submit record %+v", r)
			}
		case "submit-failed":
			if r.HTTPStatus != 503 || r.Attempts != 3 {
				t.Fatalf("submit-failed record %+v", r)
			}
		}
	}
}

// A refusal is never retried and a 2xx without a report is not "submitted".
func TestSubmitErrorKinds(t *testing.T) {
	se := &agent.SubmitError{Status: 422, Refused: true}
	if !errorsIs(se, agent.ErrRefused) || !errorsIs(se, agent.ErrSubmit) {
		t.Fatal("refusal does not match ErrRefused and ErrSubmit")
	}
	se = &agent.SubmitError{Status: 503}
	if errorsIs(se, agent.ErrRefused) || !errorsIs(se, agent.ErrSubmit) {
		t.Fatal("failure kinds")
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCSCBody drives the bodies of credentials/authorize and signatures/signHash through their handlers
// (decoding, the CSC parameter checks, the hash decoding) with a physician's identity and the fake service.
// Properties: no 5xx; a refusal is a CSC error ({"error", "error_description"}, both set) and reaches no
// service; signHash answers exactly as many signatures as the body has hashes; authorize answers 202 with a
// handle or 200 with a SAD. Seeds: testdata/fuzz/FuzzCSCBody/.
func FuzzCSCBody(f *testing.F) {
	e := newEnv(f, nil)
	for _, s := range []string{
		`{"credentialID":"c1","SAD":"sad","hashes":["` + zeroHash + `"],"signAlgo":"1.2.840.10045.4.3.2"}`,
		`{"credentialID":"c1","numSignatures":1,"hashes":["` + zeroHash + `"]}`,
		`{"credentialID":"c1","numSignatures":1,"hashes":["` + zeroHash + `"],"authData":[{"id":"webauthn_handle","value":"aa"},{"id":"webauthn_assertion","value":"e30"}]}`,
		`{"credentialID":"c1","SAD":"sad","hashes":["!!"],"signAlgo":"1.2.840.10045.2.1","hashAlgorithmOID":"2.16.840.1.101.3.4.2.1"}`,
		`{"credentialID":"","numSignatures":0}`, `{}`, `[]`, `null`,
	} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	id := &Identity{Role: RolePhysician, Subject: "cert:1", NationalCode: testNatCode, CouncilNumber: testCouncil}
	f.Fuzz(func(t *testing.T, sign bool, body []byte) {
		e.rec.reset()
		req := httptest.NewRequest("POST", "/csc/v2/x", bytes.NewReader(body))
		req = req.WithContext(context.WithValue(req.Context(), identityKey{}, id))
		w := httptest.NewRecorder()
		if sign {
			e.srv.handleCSCSignHash(w, req)
		} else {
			e.srv.handleCSCAuthorize(w, req)
		}
		if w.Code >= 500 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %s", w.Body)
		}
		if w.Code >= 400 {
			if out["error"] == "" || out["error"] == nil || out["error_description"] == nil {
				t.Fatalf("refusal without a CSC error: %s", w.Body)
			}
			if e.rec.total() != 0 && w.Code != http.StatusBadRequest {
				t.Fatalf("refused call reached the service: %v", e.rec.calls)
			}
			return
		}
		if e.rec.total() != 1 {
			t.Fatalf("accepted call reached the service %d times", e.rec.total())
		}
		var in struct {
			Hashes []string `json:"hashes"`
		}
		_ = json.Unmarshal(body, &in)
		switch {
		case sign:
			if sigs, _ := out["signatures"].([]any); w.Code != 200 || len(sigs) != len(in.Hashes) {
				t.Fatalf("signHash %d: %d signatures for %d hashes", w.Code, len(sigs), len(in.Hashes))
			}
		case w.Code == http.StatusAccepted:
			if out["handle"] == nil || out["publicKey"] == nil {
				t.Fatalf("202 without handle: %s", w.Body)
			}
		case w.Code == http.StatusOK:
			if out["SAD"] == nil {
				t.Fatalf("200 without SAD: %s", w.Body)
			}
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

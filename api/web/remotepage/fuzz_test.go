package remotepage

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mohr-hix/mohr/signing/remote"
)

// refusingService refuses every code and handle as the real service refuses unknown ones.
type refusingService struct{}

func (refusingService) RegistrationOptions(context.Context, string) (remote.PendingRegistration, error) {
	return remote.PendingRegistration{}, remote.ErrNotFound
}
func (refusingService) FinishRegistrationWithCode(context.Context, string, []byte) (remote.Credential, error) {
	return remote.Credential{}, remote.ErrUsed
}
func (refusingService) ActivationOptions(context.Context, string) (remote.PendingActivation, error) {
	return remote.PendingActivation{}, remote.ErrExpired
}
func (refusingService) ApproveActivation(context.Context, string, []byte) error {
	return remote.ErrAssertion
}

// FuzzPageCalls: any body sent to the pages' JSON calls gets a JSON answer with an error key the page knows
// (never a 500, never a success from a refusing service), and the security headers.
func FuzzPageCalls(f *testing.F) {
	h, err := New(Config{Service: refusingService{}})
	if err != nil {
		f.Fatal(err)
	}
	paths := []string{RegisterPath + "/options", RegisterPath + "/finish", ActivatePath + "/options", ActivatePath + "/approve"}
	for i, seed := range []string{`{"code":"AAAAA-BBBBB-CCCCC-DDDDD"}`, `{"code":"x","credential":{"id":"a"}}`, `{"handle":"00"}`,
		`{"handle":"ab","credential":null}`, `{"code":1}`, `{}`, `[]`, `{"extra":true}`, ``} {
		f.Add(uint8(i), []byte(seed))
	}
	known := map[string]bool{}
	for k := range texts["en"] {
		if len(k) > 2 && k[:2] == "m." {
			known[k[2:]] = true
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		p := paths[int(which)%len(paths)]
		req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK || rec.Code >= 500 {
			t.Fatalf("%s %q: status %d", p, body, rec.Code)
		}
		var m map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || !known[m["error"]] {
			t.Fatalf("%s %q: answer %q (error key unknown to the page)", p, body, rec.Body.String())
		}
		if rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Fatal("no security headers")
		}
	})
}

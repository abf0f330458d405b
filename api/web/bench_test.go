package web

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPage measures one upload through the page (multipart, verification, registry look-up, sealing,
// rendering both languages) against the verification alone, in the same run.
func BenchmarkPage(b *testing.B) {
	f := newFixture(b)
	v := f.h.cfg.Verifier()
	b.Run("verify-only", func(b *testing.B) {
		for b.Loop() {
			if r := v.Verify(context.Background(), f.pass); !r.Passed() {
				b.Fatal(r.Summary())
			}
		}
	})
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "rx.p7s")
	fw.Write(f.pass)
	mw.Close()
	body, ct := buf.Bytes(), mw.FormDataContentType()
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, Prefix, bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
}

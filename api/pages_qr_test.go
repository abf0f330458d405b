package api

import (
	"bytes"
	"mime/multipart"
	"strings"
	"testing"
)

// TestPagesQRLimits: a pasted QR text is an upload like a file: counted against the same per-visitor limit
// and refused with the page's 429 once over it.
func TestPagesQRLimits(t *testing.T) {
	e := pagesEnv(t)
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	_ = mw.WriteField("lang", "en")
	_ = mw.WriteField("qr", "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH")
	mw.Close()
	for i := 0; i < 3; i++ {
		r := e.do(callerNone, "POST", "/verify", mw.FormDataContentType(), b.Bytes())
		if r.status != 422 || !strings.Contains(string(r.body), "not the code of a Mohr prescription") {
			t.Fatalf("QR text %d: %d", i, r.status)
		}
	}
	if r := e.do(callerNone, "POST", "/verify", mw.FormDataContentType(), b.Bytes()); r.status != 429 {
		t.Fatalf("over the limit: %d", r.status)
	}
}

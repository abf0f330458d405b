package web

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
	"github.com/mohr-hix/mohr/signing/pades"
)

// upload reads the multipart form as a stream (nothing goes to disk: a file part is read into memory up to
// MaxUpload and no further), verifies the file and renders the result or a plain-language message.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		h.render(w, r, http.StatusBadRequest, h.page(r, lang, nil, msgNoFile))
		return
	}
	// The whole body may be the file plus a little form overhead; anything beyond is refused.
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxUpload+64<<10)
	mr := multipart.NewReader(r.Body, params["boundary"])
	var file []byte
	var qrText string
	var tooLarge, gotFile bool
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				tooLarge = true
				break
			}
			h.render(w, r, http.StatusBadRequest, h.page(r, lang, nil, msgNoFile))
			return
		}
		switch part.FormName() {
		case "lang":
			b, _ := io.ReadAll(io.LimitReader(part, 8))
			if string(b) == "en" {
				lang = "en"
			}
		case "qr":
			b, err := io.ReadAll(io.LimitReader(part, maxQRText+1))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) || len(b) > maxQRText {
				tooLarge = true
			} else if err != nil {
				h.render(w, r, http.StatusBadRequest, h.page(r, lang, nil, msgNoFile))
				return
			}
			qrText = string(b)
		case "file":
			gotFile = true
			file, err = io.ReadAll(io.LimitReader(part, h.cfg.MaxUpload+1))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) || int64(len(file)) > h.cfg.MaxUpload {
				tooLarge = true
			} else if err != nil {
				h.render(w, r, http.StatusBadRequest, h.page(r, lang, nil, msgNoFile))
				return
			}
		}
		part.Close()
		if tooLarge {
			break
		}
	}
	switch {
	case tooLarge:
		h.render(w, r, http.StatusRequestEntityTooLarge, h.page(r, lang, nil, msgTooLarge))
		return
	case (!gotFile || len(file) == 0) && strings.TrimSpace(qrText) == "":
		h.render(w, r, http.StatusBadRequest, h.page(r, lang, nil, msgNoFile))
		return
	}
	// The bytes are not wiped afterwards: the verifier's caches may keep parsed certificates that point into
	// them. They are garbage once the answer is written; nothing keeps or writes them anywhere.
	var res *checked
	var msg string
	switch {
	case len(file) > 0 && isImage(file):
		// A photo or scan of the printed QR code (offline.go).
		res, msg, err = h.checkQRImage(r.Context(), file)
	case len(file) == 0:
		res, msg, err = h.checkQR(r.Context(), qrText)
	default:
		res, msg = h.check(r.Context(), file)
	}
	if err != nil {
		h.report(r, err)
		h.render(w, r, http.StatusServiceUnavailable, h.page(r, lang, nil, msgServer))
		return
	}
	if msg != "" {
		h.render(w, r, http.StatusUnprocessableEntity, h.page(r, lang, nil, msg))
		return
	}
	if h.observe != nil {
		h.observe(string(res.report.Indication))
	}
	// An offline check is not sealed: the exchange vouches for full validations, and the offline report is
	// what any pharmacy's verifier computes from the same bundle.
	if h.cfg.Seal != nil && res.offline == nil {
		sealed, err := signing.SealReport(r.Context(), res.report, *h.cfg.Seal, h.cfg.Now)
		if err != nil {
			res.sealRef = h.report(r, err)
		} else {
			res.sealed = sealed
		}
	}
	h.render(w, r, http.StatusOK, h.page(r, lang, res, ""))
}

// checked is what one verification found, before it is put into words.
type checked struct {
	report  *signing.Report
	pdf     bool
	nsigs   int
	content []byte // the FHIR Bundle of a CAdES prescription; nil for a PDF
	// profession is the prescriber's profession from the certificate's admission extension; reg is the
	// registry's record when the registry knows the council number.
	profession string
	reg        *signing.Registration
	// certCouncil is the council number read from the certificate when the report has no Prescriber.
	certCouncil string
	sealed      []byte
	sealRef     string
	// offline is set for a QR code checked offline against the trust bundle (offline.go).
	offline *offline.Result
}

// check verifies file as a signed PDF or a CMS signature. msg is set (and res nil) when the file is not
// something that can be verified; a signature that does not hold is a result, not a message.
func (h *Handler) check(ctx context.Context, file []byte) (res *checked, msg string) {
	var cmsDER []byte
	res = &checked{}
	v := h.cfg.Verifier()
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(file, " \t\r\n"), []byte("%PDF-")):
		reps, err := pades.Verify(ctx, file, v)
		if errors.Is(err, pades.ErrNoSignature) {
			return nil, msgNoSignature
		}
		if err != nil || len(reps) == 0 {
			return nil, msgNotSigned
		}
		sigs, err := pades.Signatures(file)
		if err != nil || len(sigs) != len(reps) {
			return nil, msgNotSigned
		}
		// The last signature covers the whole file; it is the one a reader relies on.
		res.report, res.pdf, res.nsigs = reps[len(reps)-1], true, len(reps)
		cmsDER = sigs[len(sigs)-1].CMS
	default:
		cmsDER = file
		if blk, _ := pem.Decode(bytes.TrimSpace(file)); blk != nil {
			cmsDER = blk.Bytes
		}
		content, err := signing.Content(cmsDER)
		if err != nil {
			return nil, msgNotSigned
		}
		res.content, res.nsigs = content, 1
		res.report = v.Verify(ctx, cmsDER)
	}
	council := ""
	if p := res.report.Prescriber; p != nil {
		council = p.CouncilNumber
	}
	if cert, _, err := signing.SignerCertificates(cmsDER); err == nil {
		if a, err := hixext.ParseAdmission(cert); err == nil {
			res.profession = a.Profession
			if council == "" {
				// A PDF signature carries no prescription data for the verifier's health-domain checks; the
				// council number comes from the certificate.
				council, res.certCouncil = a.RegistrationNumber, a.RegistrationNumber
			}
		}
	}
	if council != "" && h.cfg.Registry != nil {
		if reg, err := h.cfg.Registry.Registration(ctx, council); err == nil {
			res.reg = &reg
		}
	}
	return res, ""
}

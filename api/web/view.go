package web

import (
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
	_ "time/tzdata" // Asia/Tehran for the local time shown beside UTC, also where the system has no zoneinfo

	"github.com/mohr-hix/mohr/internal/jalali"
	"github.com/mohr-hix/mohr/signing"
)

// page is what the template renders: the same content in both languages, the visitor's first. The other
// language's copy is hidden; the script swaps them in place, and without script the language link reloads
// the empty form in the other language.
type page struct {
	SealKey string
	Lang    string
	Dir     string
	Title   string
	Views   []*view
}

type view struct {
	Lang, Dir, Other string
	Hidden           bool
	Viewer           string
	MaxMB, Limit     string
	Msg              string
	Result           *resultView
	// SealKey is the pinned trust-bundle seal key (base64 SubjectPublicKeyInfo) for the browser check
	// (static/offline.js); empty when the page has no trust bundle.
	SealKey string
	t       map[string]string
}

// T returns the view's text for key.
func (v *view) T(key string) string {
	if s, ok := v.t[key]; ok {
		return s
	}
	return key
}

type resultView struct {
	Verdict                   string // passed, failed, undetermined: the CSS class and icon
	VerdictText, Advice, Why  string
	Indication, Sub, Reason   string
	Level                     string
	PDF                       bool
	Signatures                string
	Rx                        *rxView
	RxNote                    string
	SignerName, SignerCouncil string
	SignerSpecialty           string
	SignerNationalCode        string
	SignedJalali, SignedGreg  string
	SignedSource              string
	Standing, StandingClass   string
	Chain                     []chainBox
	ChainHeight               int
	SealedURL                 template.URL
	SealRef                   string
	ContentSHA256             string
	Offline                   *offlineView
}

// offlineView says that a result is an offline check and against which trust bundle.
type offlineView struct {
	Note                     string // what an offline check proves and what it cannot
	IssuedJalali, IssuedGreg string
	NextJalali, NextGreg     string
	Age                      string
	Revoked                  string
	SHA256                   string
	PrescriptionID           string
}

type rxView struct {
	PatientName, PatientCode, PatientBirth, PatientGender string
	WrittenJalali, WrittenGreg                            string
	Medicines                                             []medView
}

type medView struct {
	N                          string
	Name, Dosage, Qty, Repeats string
}

// chainBox is one certificate in the chain picture, drawn top (root) to bottom (signer).
type chainBox struct {
	Role, Name string
	Class      string // ok, bad, unknown
	Icon       string
	Y, TextY   int
	ArrowY     int // the arrow from the box above ends here; 0 for the first box
}

// Message keys for the plain-language answers to bad input.
const (
	msgNoFile        = "msg.nofile"
	msgTooLarge      = "msg.toolarge"
	msgNotSigned     = "msg.notsigned"
	msgNoSignature   = "msg.nosignature"
	msgRateLimited   = "msg.ratelimited"
	msgServer        = "msg.server"
	msgNotFound      = "msg.notfound"
	msgNotQR         = "msg.notqr"
	msgNoQR          = "msg.noqr"
	msgImageTooLarge = "msg.imagetoolarge"
)

func (h *Handler) page(r *http.Request, lang string, res *checked, msg string) *page {
	p := &page{Lang: lang, Dir: dirOf(lang), SealKey: h.sealSPKI}
	for _, l := range []string{lang, other(lang)} {
		v := &view{Lang: l, Dir: dirOf(l), Other: other(l), Hidden: l != lang, Viewer: viewer(r.Context()), t: texts[l], SealKey: h.sealSPKI}
		v.MaxMB = num(l, fmt.Sprint(h.cfg.MaxUpload>>20))
		v.Limit = strings.ReplaceAll(v.T("limit"), "{max}", v.MaxMB)
		if msg != "" {
			v.Msg = strings.ReplaceAll(v.T(msg), "{max}", v.MaxMB)
		}
		if res != nil {
			v.Result = h.result(l, res)
		}
		p.Views = append(p.Views, v)
	}
	p.Title = p.Views[0].T("title")
	return p
}

func dirOf(lang string) string {
	if lang == "fa" {
		return "rtl"
	}
	return "ltr"
}

func other(lang string) string {
	if lang == "fa" {
		return "en"
	}
	return "fa"
}

// num writes ASCII digits as Persian digits (U+06F0..U+06F9) in Persian text.
func num(lang, s string) string {
	if lang != "fa" {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			c = '۰' + (c - '0')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func tehran() *time.Location {
	if l, err := time.LoadLocation("Asia/Tehran"); err == nil {
		return l
	}
	return time.FixedZone("IRST", 3*3600+1800) // Iran has kept UTC+03:30 all year since 2022
}

var gregFa = [12]string{"ژانویه", "فوریه", "مارس", "آوریل", "مه", "ژوئن", "ژوئیه", "اوت", "سپتامبر", "اکتبر", "نوامبر", "دسامبر"}

// when formats t as a Jalali date with Tehran's local time, and as a Gregorian date with UTC. withTime false
// gives the dates alone.
func (h *Handler) when(lang string, t time.Time, withTime bool) (jal, greg string) {
	lt := t.In(h.teh)
	j, err := jalali.FromTime(lt)
	if err != nil {
		return "", t.UTC().Format(time.RFC3339)
	}
	u := t.UTC()
	if lang == "fa" {
		jal = num(lang, fmt.Sprintf("%d %s %d", j.Day, jalali.MonthName(j.Month, false), j.Year))
		greg = num(lang, fmt.Sprintf("%d %s %d", u.Day(), gregFa[u.Month()-1], u.Year()))
		if withTime {
			jal += num(lang, fmt.Sprintf("، ساعت %s به وقت تهران", lt.Format("15:04")))
			greg += num(lang, fmt.Sprintf("، ساعت %s به وقت هماهنگ جهانی (UTC)", u.Format("15:04")))
		}
		return jal, greg
	}
	jal = fmt.Sprintf("%d %s %d", j.Day, jalali.MonthName(j.Month, true), j.Year)
	greg = u.Format("2 January 2006")
	if withTime {
		jal += ", " + lt.Format("15:04") + " Tehran time"
		greg += ", " + u.Format("15:04") + " UTC"
	}
	return jal, greg
}

// result puts a verification into words in lang.
func (h *Handler) result(lang string, c *checked) *resultView {
	t := texts[lang]
	rep := c.report
	rv := &resultView{Indication: string(rep.Indication), Sub: string(rep.SubIndication), Reason: rep.Reason,
		Level: rep.Level, PDF: c.pdf, Signatures: num(lang, fmt.Sprint(c.nsigs)), ContentSHA256: rep.ContentSHA256, SealRef: c.sealRef}
	switch rep.Indication {
	case signing.TotalPassed:
		rv.Verdict = "passed"
	case signing.TotalFailed:
		rv.Verdict = "failed"
	default:
		rv.Verdict = "undetermined"
	}
	rv.VerdictText, rv.Advice = t["verdict."+rv.Verdict], t["advice."+rv.Verdict]
	if rep.SubIndication != "" {
		if s, ok := t["sub."+string(rep.SubIndication)]; ok {
			rv.Why = s
		} else {
			rv.Why = t["sub.other"]
		}
	}

	// Who signed.
	if p := rep.Prescriber; p != nil {
		rv.SignerName, rv.SignerCouncil, rv.SignerNationalCode = p.Name, num(lang, p.CouncilNumber), num(lang, p.NationalCode)
		rv.Standing, rv.StandingClass = standing(t, p.Registration)
	} else if rep.Signer != nil {
		rv.SignerName = commonName(rep.Signer.Subject)
		rv.SignerCouncil = num(lang, c.certCouncil)
		rv.Standing, rv.StandingClass = standing(t, "")
		if c.reg != nil && !rep.BestSignatureTime.IsZero() {
			// The verifier made no registry check (a PDF): check the registration at the signing time here.
			if c.reg.ActiveAt(rep.BestSignatureTime) {
				rv.Standing, rv.StandingClass = standing(t, "active")
			} else {
				rv.Standing, rv.StandingClass = standing(t, "suspended")
			}
		}
	}
	rv.SignerSpecialty = c.profession
	if rv.Verdict == "passed" {
		if c.reg != nil && c.reg.Name != "" {
			rv.SignerName = c.reg.Name
		}
		if c.reg != nil && c.reg.Specialty != "" {
			rv.SignerSpecialty = c.reg.Specialty
		}
	} else {
		// A signature that did not pass does not establish who signed: show only what the certificate
		// claims, and no standing from the registry, which would lend the claim the registry's authority.
		rv.Standing, rv.StandingClass = t["standing.na"], "unknown"
	}

	// When.
	if !rep.BestSignatureTime.IsZero() {
		rv.SignedJalali, rv.SignedGreg = h.when(lang, rep.BestSignatureTime, true)
		switch {
		case len(rep.Timestamps) > 0 && rep.Passed():
			rv.SignedSource = t["time.timestamp"]
		case rep.ClaimedSigningTime != nil && rep.ClaimedSigningTime.Equal(rep.BestSignatureTime):
			rv.SignedSource = t["time.claimed"]
		default:
			rv.SignedSource = t["time.validation"]
		}
	}

	// The prescription.
	switch {
	case c.offline != nil:
		h.offlineResult(lang, c.offline, rv)
	case c.pdf:
		rv.RxNote = t["rx.pdf"]
	case c.content != nil:
		rx, err := parsePrescription(c.content)
		p := rep.Prescriber
		if err == nil && p != nil && (p.PatientCode != "" && rx.PatientNationalCode != p.PatientCode ||
			p.CouncilNumber != "" && rx.PrescriberCouncil != "" && rx.PrescriberCouncil != p.CouncilNumber) {
			err = errDuplicateKey // what the page read differs from what the verifier read
		}
		if err != nil {
			rv.RxNote = t["rx.unreadable"]
			break
		}
		v := &rxView{PatientName: rx.PatientName, PatientCode: num(lang, rx.PatientNationalCode), PatientGender: t["gender."+rx.PatientGender]}
		if b, err := time.Parse(time.DateOnly, rx.PatientBirthDate); err == nil {
			v.PatientBirth, _ = h.when(lang, b.Add(12*time.Hour), false)
		}
		if !rx.Written.IsZero() {
			v.WrittenJalali, v.WrittenGreg = h.when(lang, rx.Written, false)
		}
		for i, m := range rx.Medicines {
			mv := medView{N: num(lang, fmt.Sprint(i+1)), Name: m.Name, Dosage: m.Dosage, Qty: num(lang, m.Quantity)}
			if m.Repeats > 0 {
				mv.Repeats = num(lang, fmt.Sprint(m.Repeats))
			}
			v.Medicines = append(v.Medicines, mv)
		}
		if rv.SignerSpecialty == "" {
			rv.SignerSpecialty = rx.PrescriberSpecialty
		}
		rv.Rx = v
		if rv.Verdict != "passed" {
			rv.RxNote = t["rx.unconfirmed"]
		}
	}

	rv.Chain, rv.ChainHeight = chainPicture(t, rep)
	if c.sealed != nil {
		rv.SealedURL = template.URL("data:application/pkcs7-mime;base64," + base64.StdEncoding.EncodeToString(c.sealed))
	}
	return rv
}

// standing words the registry check of the report (signing's Prescriber.Registration).
func standing(t map[string]string, reg string) (text, class string) {
	switch {
	case reg == "active" || reg == "expired":
		// "expired" now, but the check was made for the signing time.
		return t["standing.good"], "ok"
	case strings.Contains(reg, "not valid at signing time"), reg == "suspended":
		return t["standing.bad"], "bad"
	case reg == "unknown":
		return t["standing.unknown"], "bad"
	case reg == "mismatch":
		return t["standing.mismatch"], "bad"
	case reg == "unavailable":
		return t["standing.unavailable"], "unknown"
	case strings.Contains(reg, "offline"):
		return t["standing.offline"], "unknown"
	}
	return t["standing.notchecked"], "unknown"
}

// commonName returns the CN of a distinguished name in RFC 2253 form ("CN=x,O=y"), or the whole name.
func commonName(dn string) string {
	for _, part := range strings.Split(dn, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
			return v
		}
	}
	return dn
}

// certProblem: sub-indications that are about the signer's certificate itself.
var certProblem = map[signing.SubIndication]bool{
	signing.Revoked: true, signing.Expired: true, signing.NotYetValid: true, signing.RevokedNoPOE: true,
	signing.OutOfBoundsNoPOE: true, signing.OutOfBoundsNotRevoked: true,
}

// chainProblem: sub-indications that mean the chain to a trusted root was not found or not acceptable.
var chainProblem = map[signing.SubIndication]bool{
	signing.NoCertificateChainFound: true, signing.CertificateChainGeneralFailure: true, signing.ChainConstraintsFailure: true,
}

const (
	boxH   = 54
	boxGap = 30
)

// chainPicture lays the chain out top to bottom: the root, the intermediate, the signer's certificate.
func chainPicture(t map[string]string, rep *signing.Report) ([]chainBox, int) {
	certs := rep.Chain // leaf first
	if len(certs) == 0 && rep.Signer != nil {
		certs = []signing.CertInfo{*rep.Signer}
	}
	if len(certs) == 0 {
		return nil, 0
	}
	var boxes []chainBox
	top := certs[len(certs)-1]
	switch {
	case chainProblem[rep.SubIndication]:
		// No trusted root was reached: draw the missing issuer as unknown.
		boxes = append(boxes, chainBox{Role: t["chain.unknown"], Name: commonName(top.Issuer), Class: "unknown", Icon: "?"})
	case top.Subject != top.Issuer:
		// The validation stopped before the chain was built (the signature itself failed): its issuer was
		// not checked.
		boxes = append(boxes, chainBox{Role: t["chain.unchecked"], Name: commonName(top.Issuer), Class: "unknown", Icon: "?"})
	}
	for i := len(certs) - 1; i >= 0; i-- {
		c := certs[i]
		b := chainBox{Name: commonName(c.Subject), Class: "ok", Icon: "✓"}
		switch {
		case i == 0:
			b.Role = t["chain.signer"]
			if certProblem[rep.SubIndication] {
				b.Class, b.Icon = "bad", "✗"
			}
		case c.Subject == c.Issuer:
			b.Role = t["chain.root"]
		default:
			b.Role = t["chain.intermediate"]
		}
		if chainProblem[rep.SubIndication] {
			b.Class, b.Icon = "unknown", "?"
		}
		boxes = append(boxes, b)
	}
	y := 4
	for i := range boxes {
		boxes[i].Y = y
		boxes[i].TextY = y + 22
		if i > 0 {
			boxes[i].ArrowY = y - 2
		}
		y += boxH + boxGap
	}
	return boxes, y - boxGap + 4
}

var funcs = template.FuncMap{
	"add": func(a, b int) int { return a + b },
	"sub": func(a, b int) int { return a - b },
}

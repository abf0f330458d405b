package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/mohr-hix/mohr/ca"
)

// Issuance rights per certificate profile: the profile dimension of the access matrix. POST /v1/certificates is
// open to operators and RA officers (the route table); what they may have issued depends on the profile.
//
//   - Subscriber profiles (a facility's adapter token, a physician's card certificates, a pharmacy's or
//     insurer's API credential) are the registration authority's daily work: an RA officer or an operator
//     issues them at once, after the RA checks the CA makes against the registries.
//   - Profiles whose certificates make other signatures or callers trustworthy (time-stamping, OCSP responder,
//     organisation seals such as the one that seals validation reports, staff credentials, TLS server
//     certificates) are never RA business. Through the API only an operator may ask for one, and only under
//     dual control: the request becomes a pending approval that a second operator executes
//     (ETSI EN 319 401 REQ-7.2-08 / EN 319 411-1 OVR-6.4.5 "trusted roles", WebTrust SSBR 3.5 "dual control").
//     Mohr itself issues the certificates of the keys in its own configuration (TSA, OCSP, seal, TLS) without
//     the API, from `mohr serve`.
//
// Keep docs/access-matrix.md in step: go test ./api -run TestAccessMatrixDoc -update.

// issueRule says who may have a certificate of one profile issued through the API.
type issueRule struct {
	profile    string
	subscriber bool   // issued at once by operators and RA officers; otherwise operators under dual control only
	why        string // for the documentation
}

// issueRules lists every profile of ca.Profiles (TestIssueRulesCoverProfiles checks it).
var issueRules = []issueRule{
	{ca.ProfileFacilityAdapter, true, "a facility's HIX adapter token (subscriber)"},
	{ca.ProfilePhysicianSigning, true, "a physician's non-repudiation key on the council card (subscriber)"},
	{ca.ProfilePhysicianAuth, true, "a physician's card authentication key (subscriber)"},
	{ca.ProfileOrganisationAuth, true, "a pharmacy's or insurer's API credential (subscriber)"},
	{ca.ProfileOrganisationSeal, false, "seals validation reports and other evidence: relying parties trust what it seals"},
	{ca.ProfileOCSPResponder, false, "its signature states the revocation status of every certificate"},
	{ca.ProfileTSA, false, "its signature dates every other signature"},
	{ca.ProfileTLSServer, false, "names the exchange's own endpoints"},
	{ca.ProfileOperator, false, "a trusted-role credential (operator, RA officer, auditor)"},
}

func issueRuleFor(profile string) (issueRule, bool) {
	for _, r := range issueRules {
		if r.profile == profile {
			return r, true
		}
	}
	return issueRule{}, false
}

// issueAccess is what role may do for profile: allow (at once), dualOnly (operators, a pending approval) or deny.
type issueAccess uint8

const (
	issueDenied issueAccess = iota
	issueAtOnce
	issueDual
)

func issueAccessFor(profile string, role Role) issueAccess {
	rule, ok := issueRuleFor(profile)
	if !ok {
		return issueDenied
	}
	switch role {
	case RoleOperator:
		if rule.subscriber {
			return issueAtOnce
		}
		return issueDual
	case RoleRAOfficer:
		if rule.subscriber {
			return issueAtOnce
		}
	}
	return issueDenied
}

func (s *Server) handleIssue(w http.ResponseWriter, r *http.Request) {
	var b issueBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := b.validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, ok := issueRuleFor(b.Profile); !ok {
		s.fail(w, r, invalid("unknown profile"))
		return
	}
	id, _ := IdentityFrom(r.Context())
	req := IssueRequest{Profile: b.Profile, CSR: b.CSR, Subject: b.Subject, Actor: id.Actor()}
	switch issueAccessFor(b.Profile, id.Role) {
	case issueAtOnce:
		rec, err := s.svc.Certs.Issue(r.Context(), req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("Location", "/v1/certificates/"+rec.Serial)
		writeJSON(w, http.StatusCreated, viewCert(rec))
	case issueDual:
		if !dualReady(&s.svc) {
			s.problem(w, probNotImplemented, "dual control is not configured")
			return
		}
		if _, err := parseCSR(b.CSR); err != nil { // the CA checks it again when the approval is executed
			s.fail(w, r, err)
			return
		}
		csrSum := sha256.Sum256(b.CSR)
		s.requestApproval(w, r, opIssueCert, issueApprovalParams{Profile: b.Profile, Subject: b.Subject, CSR: b.CSR,
			CSRSHA256: hex.EncodeToString(csrSum[:])})
	default:
		s.problem(w, probForbidden, fmt.Sprintf("%s certificates are issued only by operators under dual control", b.Profile))
	}
}

// issueApprovalParams is what an issuance under dual control stores for the approving node to execute.
type issueApprovalParams struct {
	Profile   string     `json:"profile"`
	Subject   SubjectIDs `json:"subject"`
	CSR       []byte     `json:"csr"`
	CSRSHA256 string     `json:"csrSha256"`
}

// execIssue issues the certificate of an approved issuance.
func (s *Server) execIssue(ctx context.Context, raw json.RawMessage, actors [2]string) (any, error) {
	var p issueApprovalParams
	if json.Unmarshal(raw, &p) != nil || len(p.CSR) == 0 {
		return nil, invalid("the approval's stored parameters are not valid for " + opIssueCert)
	}
	if sum := sha256.Sum256(p.CSR); hex.EncodeToString(sum[:]) != p.CSRSHA256 {
		return nil, invalid("the approval's stored CSR does not match its digest")
	}
	if _, ok := issueRuleFor(p.Profile); !ok {
		return nil, invalid("unknown profile")
	}
	rec, err := s.svc.Certs.Issue(ctx, IssueRequest{Profile: p.Profile, CSR: p.CSR, Subject: p.Subject, Actor: dualActor(actors)})
	if err != nil {
		return nil, err
	}
	return viewCert(rec), nil
}

// dualActor names both operators of a dual-control operation for the audit event of what it did.
func dualActor(actors [2]string) string { return actors[0] + " approved-by " + actors[1] }

// issuanceMatrixMarkdown renders the profile dimension of the access matrix.
func issuanceMatrixMarkdown() string {
	var b strings.Builder
	b.WriteString("| profile | operator | ra-officer | other roles | why |\n|---|---|---|---|---|\n")
	cell := func(a issueAccess) string {
		switch a {
		case issueAtOnce:
			return "yes"
		case issueDual:
			return "dual control"
		}
		return "-"
	}
	for _, rule := range issueRules {
		fmt.Fprintf(&b, "| `%s` | %s | %s | - | %s |\n", rule.profile, cell(issueAccessFor(rule.profile, RoleOperator)),
			cell(issueAccessFor(rule.profile, RoleRAOfficer)), rule.why)
	}
	return b.String()
}

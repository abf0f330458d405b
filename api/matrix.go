package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// access is what a role may do on a route.
type access uint8

const (
	deny  access = iota
	allow        // any object
	own          // only objects whose path parameter route.ownParam names the caller (its SIAM ID or council number)
)

// bodyKind selects a route's body limit.
type bodyKind uint8

const (
	noBody     bodyKind = iota
	jsonBody            // Config.MaxJSONBody
	cmsBody             // Config.MaxCMSBody
	importBody          // Config.MaxImportBody
	batchBody           // Config.MaxBatchBody, and BatchTimeout instead of RequestTimeout
	pkiBody             // Config.MaxPKIBody: OCSP and time-stamp requests
)

// Media types the API speaks.
const (
	ctJSON       = "application/json"
	ctNDJSON     = "application/x-ndjson"
	ctCMS        = "application/cms"
	ctPKCS7      = "application/pkcs7-mime"
	ctOCSPReq    = "application/ocsp-request"
	ctPKCS10     = "application/pkcs10"
	ctPEMChain   = "application/pem-certificate-chain"
	ctOCSPResp   = "application/ocsp-response"
	ctTSQuery    = "application/timestamp-query"
	ctTSReply    = "application/timestamp-reply"
	ctPKIXCRL    = "application/pkix-crl"
	ctText       = "text/plain; charset=utf-8"
	ctPrometheus = "text/plain; version=0.0.4"
)

// queryParam documents a query parameter for the OpenAPI document.
type queryParam struct {
	name, desc string
	required   bool
	integer    bool
}

// route is one line of the access matrix and everything else api knows about an endpoint. The router, the
// enforce middleware, the OpenAPI document and docs/access-matrix.md are all made from this one table.
type route struct {
	method, pattern string
	op, summary     string
	tag             string
	// public routes need no credential (they ignore one that does not verify). loopback routes need none from a
	// loopback peer.
	public, loopback bool
	roles            map[Role]access
	ownParam         string // path parameter compared with the caller's identifier for access own
	dual             bool   // dual control: creates a pending approval
	signs            bool   // each answer costs a signature with a service key: the signing rate limits apply
	auditDenied      bool   // a caller refused by role is recorded in the audit log (remote signing, csc.go)
	body             bodyKind
	reqTypes         []string // accepted request media types; empty: no body
	respType         string
	okStatus         int
	query            []queryParam
	needs            func(*Services) bool
	handle           func(*Server, http.ResponseWriter, *http.Request)
}

// key is how the matrix is indexed: method, space, chi route pattern.
func (rt *route) key() string { return rt.method + " " + rt.pattern }

func roles(rs ...Role) map[Role]access {
	m := make(map[Role]access, len(rs))
	for _, r := range rs {
		m[r] = allow
	}
	return m
}

func with(m map[Role]access, r Role, a access) map[Role]access {
	m[r] = a
	return m
}

// Role sets used more than once.
var (
	caStaff      = []Role{RoleOperator, RoleRAOfficer}
	caReaders    = []Role{RoleOperator, RoleRAOfficer, RoleAuditor}
	auditReaders = []Role{RoleOperator, RoleAuditor}
	verifiers    = []Role{RoleOperator, RoleAuditor, RoleFacility, RolePhysician, RolePharmacy, RoleInsurer}
)

// routes is the access matrix. Keep docs/access-matrix.md in step: go test ./api -run TestAccessMatrixDoc -update.
var routes = []*route{
	// Public: health, the OpenAPI document, and the PKI protocols that relying parties reach without a
	// client certificate.
	{method: "GET", pattern: "/healthz", op: "healthz", summary: "Liveness", tag: "ops", public: true,
		respType: ctJSON, okStatus: 200, handle: (*Server).handleHealthz},
	{method: "GET", pattern: "/readyz", op: "readyz", summary: "Readiness", tag: "ops", public: true,
		respType: ctJSON, okStatus: 200, handle: (*Server).handleReadyz},
	{method: "GET", pattern: "/metrics", op: "metrics", summary: "Prometheus metrics (operator, auditor, or any loopback caller)",
		tag: "ops", loopback: true, roles: roles(auditReaders...), respType: ctPrometheus, okStatus: 200,
		handle: (*Server).handleMetrics},
	{method: "GET", pattern: "/v1/openapi.json", op: "openapi", summary: "This OpenAPI 3.1 document", tag: "ops",
		public: true, respType: ctJSON, okStatus: 200, handle: (*Server).handleOpenAPI},
	{method: "GET", pattern: "/crl/{shard}.crl", op: "getCRL", summary: "Current CRL of a shard (RFC 5280)", tag: "revocation",
		public: true, respType: ctPKIXCRL, okStatus: 200, needs: func(s *Services) bool { return s.CRL != nil },
		handle: (*Server).handleCRL},
	{method: "GET", pattern: "/ocsp/*", op: "ocspGet", summary: "OCSP request in the path (RFC 6960 A.1)", tag: "revocation",
		public: true, respType: ctOCSPResp, okStatus: 200, needs: func(s *Services) bool { return s.OCSP != nil },
		handle: (*Server).handleOCSPGet},
	{method: "POST", pattern: "/ocsp", op: "ocspPost", summary: "OCSP request (RFC 6960 A.1)", tag: "revocation",
		public: true, body: pkiBody, reqTypes: []string{ctOCSPReq}, respType: ctOCSPResp, okStatus: 200,
		needs: func(s *Services) bool { return s.OCSP != nil }, handle: (*Server).handleOCSPPost},
	{method: "GET", pattern: "/trust-bundle", op: "getTrustBundle", summary: "Signed trust bundle for offline verification (COSE_Sign1; docs/offline.md)",
		tag: "revocation", public: true, respType: ctCOSESign1, okStatus: 200,
		needs: func(s *Services) bool { return s.Offline != nil }, handle: (*Server).handleTrustBundle},
	{method: "GET", pattern: "/v1/revocations", op: "revocationFeed", summary: "Issuances and revocations in order, for gateways that follow revocations as they happen (serials and states, as public as the CRL)",
		tag: "revocation", public: true, respType: ctJSON, okStatus: 200,
		query: []queryParam{{name: "from", desc: "first change to list (the previous page's next); absent: only the head", integer: true},
			{name: "profile", desc: "only certificates of this profile, e.g. facility-adapter"}},
		needs: func(s *Services) bool { return s.Revocations != nil }, handle: (*Server).handleRevocationFeed},
	{method: "POST", pattern: "/tsa", op: "timestamp", summary: "Time-stamp query (RFC 3161 §3.4)", tag: "timestamp",
		public: true, signs: true, body: pkiBody, reqTypes: []string{ctTSQuery}, respType: ctTSReply, okStatus: 200,
		needs: func(s *Services) bool { return s.TSA != nil }, handle: (*Server).handleTSA},
	// Enrolment is authenticated by the one-time code in the body: a facility has no certificate before it.
	{method: "POST", pattern: "/v1/enrolment", op: "enrol", summary: "Redeem an enrolment code with a CSR for an adapter token",
		tag: "tokens", public: true, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201,
		needs: func(s *Services) bool { return s.Tokens != nil }, handle: (*Server).handleEnrol},

	{method: "GET", pattern: "/v1/whoami", op: "whoami", summary: "The caller's identity and role", tag: "ops",
		roles: roles(Roles...), respType: ctJSON, okStatus: 200, handle: (*Server).handleWhoami},

	// Certificates.
	{method: "POST", pattern: "/v1/certificates", op: "issueCertificate", summary: "Issue a certificate from a CSR", tag: "certificates",
		roles: roles(caStaff...), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201,
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleIssue},
	{method: "GET", pattern: "/v1/certificates", op: "listCertificates", summary: "List certificates", tag: "certificates",
		roles: roles(caReaders...), respType: ctJSON, okStatus: 200,
		query: []queryParam{{name: "profile"}, {name: "status"}, {name: "subject", desc: "bound identifier"},
			{name: "after", desc: "serial to continue after"}, {name: "limit", integer: true}},
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleListCerts},
	{method: "GET", pattern: "/v1/certificates/{serial}", op: "getCertificate", summary: "One certificate", tag: "certificates",
		roles: roles(caReaders...), respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleGetCert},
	{method: "POST", pattern: "/v1/certificates/{serial}/revoke", op: "revokeCertificate", summary: "Revoke a certificate", tag: "certificates",
		roles: roles(caStaff...), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleRevoke},
	{method: "POST", pattern: "/v1/certificates/{serial}/hold", op: "holdCertificate", summary: "Put a certificate on hold", tag: "certificates",
		roles: roles(caStaff...), respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleHold},
	{method: "POST", pattern: "/v1/certificates/{serial}/release", op: "releaseCertificate", summary: "Release a certificate from hold", tag: "certificates",
		roles: roles(caStaff...), respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Certs != nil }, handle: (*Server).handleRelease},

	// Tokens and enrolment.
	{method: "POST", pattern: "/v1/enrolment-codes", op: "createEnrolmentCode", summary: "Create a one-time enrolment code for a facility", tag: "tokens",
		roles: roles(caStaff...), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201,
		needs: func(s *Services) bool { return s.Tokens != nil }, handle: (*Server).handleEnrolmentCode},
	// Renewal is authenticated by the adapter's current token (mTLS): the new certificate is for the same
	// facility, and the current token must be active.
	{method: "POST", pattern: "/v1/renewal", op: "renewToken", summary: "Renew the calling adapter's token from a PKCS#10 request (RFC 5967); answers the new chain (RFC 8555 §9.1)", tag: "tokens",
		roles: roles(RoleFacility), body: cmsBody, reqTypes: []string{ctPKCS10}, respType: ctPEMChain, okStatus: 200,
		needs: func(s *Services) bool { return s.Renewal != nil }, handle: (*Server).handleRenewal},
	{method: "GET", pattern: "/v1/facilities/{siamID}/tokens", op: "listTokens", summary: "A facility's adapter tokens", tag: "tokens",
		roles: with(roles(caReaders...), RoleFacility, own), ownParam: "siamID", respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Tokens != nil }, handle: (*Server).handleListTokens},
	{method: "POST", pattern: "/v1/facilities/{siamID}/tokens/{tokenID}/revoke", op: "revokeToken", summary: "Revoke an adapter token", tag: "tokens",
		roles: with(roles(caStaff...), RoleFacility, own), ownParam: "siamID", respType: ctJSON, okStatus: 200,
		query: []queryParam{{name: "reason", desc: "RFC 5280 reason by name or code: keyCompromise for a lost or stolen token; default cessationOfOperation"}},
		needs: func(s *Services) bool { return s.Tokens != nil }, handle: (*Server).handleRevokeToken},

	// Registries.
	{method: "POST", pattern: "/v1/registry/facilities", op: "importFacilities", summary: "Import facility registry records", tag: "registry",
		roles: roles(caStaff...), body: importBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Registry != nil }, handle: (*Server).handleImportFacilities},
	{method: "POST", pattern: "/v1/registry/physicians", op: "importPhysicians", summary: "Import medical-council registry records", tag: "registry",
		roles: roles(caStaff...), body: importBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Registry != nil }, handle: (*Server).handleImportPhysicians},
	{method: "GET", pattern: "/v1/registry/facilities/{siamID}/standing", op: "facilityStanding", summary: "A facility's standing", tag: "registry",
		roles: with(roles(caReaders...), RoleFacility, own), ownParam: "siamID", respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Registry != nil }, handle: (*Server).handleFacilityStanding},
	{method: "GET", pattern: "/v1/registry/physicians/{councilNumber}/standing", op: "physicianStanding", summary: "A physician's standing", tag: "registry",
		roles: with(roles(RoleOperator, RoleRAOfficer, RoleAuditor, RolePharmacy), RolePhysician, own), ownParam: "councilNumber",
		respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Registry != nil }, handle: (*Server).handlePhysicianStanding},
	// The standing history, for verifiers outside the exchange (mohr verify --registry): who may verify a
	// prescription may learn whether its prescriber was registered when it was signed.
	{method: "GET", pattern: "/v1/registry/physicians/{councilNumber}/history", op: "physicianHistory",
		summary: "A physician's registration with every standing change and its effective time", tag: "registry",
		roles: with(roles(RoleOperator, RoleRAOfficer, RoleAuditor, RolePharmacy, RoleInsurer), RolePhysician, own), ownParam: "councilNumber",
		respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Registry != nil }, handle: (*Server).handlePhysicianHistory},

	// Signing, ingestion, verification.
	{method: "POST", pattern: "/v1/prescriptions", op: "ingestPrescription", summary: "Submit a signed prescription (HIX-Rx-CAdES)", tag: "signing",
		roles: roles(RolePhysician, RoleFacility), body: cmsBody, reqTypes: []string{ctCMS, ctPKCS7}, respType: ctJSON, okStatus: 201,
		needs: func(s *Services) bool { return s.Ingestor != nil }, handle: (*Server).handleIngest},
	{method: "POST", pattern: "/v1/verify", op: "verify", summary: "Validate one CMS signature", tag: "verification",
		roles: roles(verifiers...), body: cmsBody, reqTypes: []string{ctCMS, ctPKCS7}, respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Verifier != nil }, handle: (*Server).handleVerify},
	{method: "POST", pattern: "/v1/verify/sealed", op: "verifySealed", summary: "Validate one CMS signature; the report sealed by the exchange (CMS, evidence)", tag: "verification",
		roles: roles(verifiers...), body: cmsBody, reqTypes: []string{ctCMS, ctPKCS7}, respType: ctCMS, okStatus: 200,
		needs: func(s *Services) bool { _, ok := s.Verifier.(SealingVerifier); return ok }, handle: (*Server).handleVerifySealed},
	{method: "POST", pattern: "/v1/verify/batch", op: "verifyBatch", summary: "Validate signatures in bulk (NDJSON in, NDJSON out)", tag: "verification",
		roles: roles(verifiers...), body: batchBody, reqTypes: []string{ctNDJSON}, respType: ctNDJSON, okStatus: 200,
		query: []queryParam{{name: "from_line", desc: "resume: answer input lines from this one (1-based); earlier lines are read for duplicate detection only", integer: true}},
		needs: func(s *Services) bool { return s.Batch != nil }, handle: (*Server).handleVerifyBatch},
	{method: "GET", pattern: "/v1/prescriptions/{id}", op: "getPrescription", summary: "A stored prescription (its upgraded signature) and its sealed ingestion report", tag: "signing",
		roles: with(with(roles(rxReadersAll...), RoleFacility, own), RolePhysician, own), ownParam: ownByRecord,
		respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Prescriptions != nil }, handle: (*Server).handleGetPrescription},
	{method: "POST", pattern: "/v1/signatures/upgrade", op: "upgradeSignature", summary: "Extend a CAdES signature to B-T, B-LT or B-LTA", tag: "signing",
		roles: roles(RoleOperator, RoleFacility, RolePhysician, RolePharmacy), body: cmsBody, reqTypes: []string{ctCMS, ctPKCS7},
		respType: ctCMS, okStatus: 200, query: []queryParam{{name: "level", desc: "B-T, B-LT or B-LTA", required: true}},
		needs: func(s *Services) bool { return s.Upgrader != nil }, handle: (*Server).handleUpgrade},

	// Audit log.
	{method: "GET", pattern: "/v1/audit/checkpoint", op: "auditCheckpoint", summary: "Latest signed checkpoint (signed note)", tag: "audit",
		roles: roles(auditReaders...), respType: ctText, okStatus: 200,
		needs: func(s *Services) bool { return s.Audit != nil }, handle: (*Server).handleCheckpoint},
	{method: "POST", pattern: "/v1/audit/verify", op: "auditVerify", summary: "Verify the whole audit log", tag: "audit",
		roles: roles(auditReaders...), respType: ctJSON, okStatus: 200,
		needs: func(s *Services) bool { return s.Audit != nil }, handle: (*Server).handleAuditVerify},
	{method: "GET", pattern: "/v1/audit/proofs/inclusion", op: "auditInclusion", summary: "RFC 6962 inclusion proof", tag: "audit",
		roles: roles(auditReaders...), respType: ctJSON, okStatus: 200,
		query: []queryParam{{name: "index", required: true, integer: true}, {name: "size", required: true, integer: true}},
		needs: func(s *Services) bool { return s.Audit != nil }, handle: (*Server).handleInclusion},
	{method: "GET", pattern: "/v1/audit/proofs/consistency", op: "auditConsistency", summary: "RFC 6962 consistency proof", tag: "audit",
		roles: roles(auditReaders...), respType: ctJSON, okStatus: 200,
		query: []queryParam{{name: "old", required: true, integer: true}, {name: "new", required: true, integer: true}},
		needs: func(s *Services) bool { return s.Audit != nil }, handle: (*Server).handleConsistency},

	// Dual control: the first operator's call answers 202 with a pending approval; a different operator
	// approves it at /v1/approvals/{approvalID}/approve, which executes it.
	{method: "POST", pattern: "/v1/ca/intermediate/revoke", op: "revokeIntermediate", summary: "Revoke the intermediate CA (dual control)", tag: "ca",
		roles: roles(RoleOperator), dual: true, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 202,
		needs: dualReady, handle: (*Server).handleRevokeIntermediate},
	{method: "POST", pattern: "/v1/ca/intermediate/rekey", op: "rekeyIntermediate", summary: "Re-key the intermediate CA (dual control)", tag: "ca",
		roles: roles(RoleOperator), dual: true, respType: ctJSON, okStatus: 202,
		needs: dualReady, handle: (*Server).handleRekeyIntermediate},
	{method: "POST", pattern: "/v1/keys/{keyID}/destroy", op: "destroyKey", summary: "Destroy a key (dual control)", tag: "ca",
		roles: roles(RoleOperator), dual: true, respType: ctJSON, okStatus: 202,
		needs: dualReady, handle: (*Server).handleDestroyKey},
	{method: "PUT", pattern: "/v1/ca/trust-anchors", op: "setTrustAnchors", summary: "Replace the trust anchors (dual control)", tag: "ca",
		roles: roles(RoleOperator), dual: true, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 202,
		needs: dualReady, handle: (*Server).handleSetTrustAnchors},
	{method: "GET", pattern: "/v1/approvals", op: "listApprovals", summary: "Pending dual-control approvals", tag: "ca",
		roles: roles(auditReaders...), respType: ctJSON, okStatus: 200,
		needs: dualReady, handle: (*Server).handleListApprovals},
	{method: "POST", pattern: "/v1/approvals/{approvalID}/approve", op: "approve", summary: "Second operator approves and executes", tag: "ca",
		roles: roles(RoleOperator), respType: ctJSON, okStatus: 200,
		needs: dualReady, handle: (*Server).handleApprove},
}

func dualReady(s *Services) bool { return s.CAAdmin != nil && s.Auditor != nil }

// matrixIndex indexes routes by key and checks the table: unique keys, a handler each, and every protected
// route with at least one role.
func matrixIndex(rs []*route) (map[string]*route, error) {
	m := make(map[string]*route, len(rs))
	for _, rt := range rs {
		if _, dup := m[rt.key()]; dup {
			return nil, fmt.Errorf("api: route %s listed twice", rt.key())
		}
		if rt.handle == nil {
			return nil, fmt.Errorf("api: route %s has no handler", rt.key())
		}
		if !rt.public && len(rt.roles) == 0 {
			return nil, fmt.Errorf("api: protected route %s has no role", rt.key())
		}
		for _, a := range rt.roles {
			if a == own && rt.ownParam == "" {
				return nil, fmt.Errorf("api: route %s grants own access without an ownParam", rt.key())
			}
		}
		m[rt.key()] = rt
	}
	return m, nil
}

// AccessMatrixMarkdown renders the access matrix as the table in docs/access-matrix.md.
func AccessMatrixMarkdown() string {
	var b strings.Builder
	b.WriteString("| method | path | no credential |")
	for _, r := range Roles {
		b.WriteString(" " + string(r) + " |")
	}
	b.WriteString("\n|---|---|---|")
	for range Roles {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	sorted := slices.Clone(routes)
	slices.SortStableFunc(sorted, func(a, c *route) int { return strings.Compare(a.pattern+" "+a.method, c.pattern+" "+c.method) })
	for _, rt := range sorted {
		anon := "-"
		switch {
		case rt.public:
			anon = "yes"
		case rt.loopback:
			anon = "loopback"
		}
		note := ""
		if rt.dual {
			note = " (dual control)"
		}
		if rt.op == "issueCertificate" {
			note = " (per profile, below)"
		}
		fmt.Fprintf(&b, "| %s | `%s`%s | %s |", rt.method, rt.pattern, note, anon)
		for _, r := range Roles {
			cell := "-"
			switch {
			case rt.public:
				cell = "yes"
			case rt.roles[r] == allow:
				cell = "yes"
			case rt.roles[r] == own:
				cell = "own"
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\nIssuance by profile (`POST /v1/certificates`; \"dual control\": a pending approval that a second operator\n" +
		"executes; every other role is refused before the profile is looked at):\n\n")
	b.WriteString(issuanceMatrixMarkdown())
	return b.String()
}

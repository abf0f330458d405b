package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// call is a valid request for one operation.
type call struct {
	method, path, ctype string
	body                []byte
}

// validCalls returns, per operationId, a request that the operation accepts from an allowed caller. The test
// fails if an operation of the route table has no entry here, so new routes cannot skip the matrix test.
func validCalls(t testing.TB, e *testEnv) map[string]func() call {
	csr := base64.StdEncoding.EncodeToString(testCSR(t))
	root := base64.StdEncoding.EncodeToString(newTestCA(t, "New Root").cert.Raw)
	j := func(method, path, body string) func() call {
		return func() call { return call{method, path, ctJSON, []byte(body)} }
	}
	plain := func(method, path string) func() call { return func() call { return call{method: method, path: path} } }
	bin := func(method, path, ct string) func() call {
		return func() call { return call{method, path, ct, []byte("der")} }
	}
	return map[string]func() call{
		"healthz":             plain("GET", "/healthz"),
		"readyz":              plain("GET", "/readyz"),
		"metrics":             plain("GET", "/metrics"),
		"openapi":             plain("GET", "/v1/openapi.json"),
		"getCRL":              plain("GET", "/crl/0.crl"),
		"ocspGet":             plain("GET", "/ocsp/MFMwUTBPME0wSzAJBgUrDgMCGgUABBQ%2Fab%2B"),
		"ocspPost":            bin("POST", "/ocsp", ctOCSPReq),
		"timestamp":           bin("POST", "/tsa", ctTSQuery),
		"getTrustBundle":      plain("GET", "/trust-bundle"),
		"revocationFeed":      plain("GET", "/v1/revocations?from=3&profile=facility-adapter"),
		"enrol":               j("POST", "/v1/enrolment", `{"code":"code-12345678","csr":"`+csr+`","kind":"software"}`),
		"whoami":              plain("GET", "/v1/whoami"),
		"issueCertificate":    j("POST", "/v1/certificates", `{"profile":"facility-adapter","csr":"`+csr+`","subject":{"siamId":"SIAM-1001","licenceNumber":"L-1"}}`),
		"listCertificates":    plain("GET", "/v1/certificates?status=issued&limit=10"),
		"getCertificate":      plain("GET", "/v1/certificates/1a2b"),
		"revokeCertificate":   j("POST", "/v1/certificates/1a2b/revoke", `{"reason":1}`),
		"holdCertificate":     plain("POST", "/v1/certificates/1a2b/hold"),
		"releaseCertificate":  plain("POST", "/v1/certificates/1a2b/release"),
		"createEnrolmentCode": j("POST", "/v1/enrolment-codes", `{"siamId":"SIAM-1001"}`),
		"listTokens":          plain("GET", "/v1/facilities/"+testSIAM+"/tokens"),
		"renewToken": func() call {
			return call{"POST", "/v1/renewal", ctPKCS10, testCSR(t)}
		},
		"revokeToken": plain("POST", "/v1/facilities/"+testSIAM+"/tokens/tok1/revoke"),
		"importFacilities": j("POST", "/v1/registry/facilities", `{"facilities":[{"siamId":"SIAM-1001","name":"Clinic",`+
			`"licenceNumber":"L-1","licenceNotAfter":"2027-01-01T00:00:00Z","licenceStatus":"active"}]}`),
		"importPhysicians": j("POST", "/v1/registry/physicians", `{"physicians":[{"nationalCode":"0499370899",`+
			`"councilNumber":"12345","name":"Dr Test","status":"active","registeredUntil":"2027-01-01T00:00:00Z"}]}`),
		"facilityStanding":   plain("GET", "/v1/registry/facilities/"+testSIAM+"/standing"),
		"physicianStanding":  plain("GET", "/v1/registry/physicians/"+testCouncil+"/standing"),
		"physicianHistory":   plain("GET", "/v1/registry/physicians/"+testCouncil+"/history"),
		"ingestPrescription": bin("POST", "/v1/prescriptions", ctCMS),
		"verify":             bin("POST", "/v1/verify", ctCMS),
		"verifySealed":       bin("POST", "/v1/verify/sealed", ctCMS),
		"verifyBatch": func() call {
			return call{"POST", "/v1/verify/batch", ctNDJSON, []byte("{\"cms\":\"AA==\"}\n{\"cms\":\"AA==\"}\n")}
		},
		"upgradeSignature":   bin("POST", "/v1/signatures/upgrade?level=B-LT", ctPKCS7),
		"getPrescription":    plain("GET", "/v1/prescriptions/0a1b2c"),
		"auditCheckpoint":    plain("GET", "/v1/audit/checkpoint"),
		"auditVerify":        plain("POST", "/v1/audit/verify"),
		"auditInclusion":     plain("GET", "/v1/audit/proofs/inclusion?index=0&size=3"),
		"auditConsistency":   plain("GET", "/v1/audit/proofs/consistency?old=1&new=3"),
		"revokeIntermediate": j("POST", "/v1/ca/intermediate/revoke", `{"reason":5}`),
		"rekeyIntermediate":  plain("POST", "/v1/ca/intermediate/rekey"),
		"destroyKey":         plain("POST", "/v1/keys/key-1/destroy"),
		"setTrustAnchors":    j("PUT", "/v1/ca/trust-anchors", `{"roots":["`+root+`"]}`),
		"listApprovals":      plain("GET", "/v1/approvals"),
		"cscInfo":            j("POST", "/csc/v2/info", `{}`),
		"cscCredentialsList": j("POST", "/csc/v2/credentials/list", `{"credentialInfo":true}`),
		"cscCredentialsInfo": j("POST", "/csc/v2/credentials/info", `{"credentialID":"c1"}`),
		"cscAuthorize": j("POST", "/csc/v2/credentials/authorize", `{"credentialID":"c1","numSignatures":1,"hashes":["`+zeroHash+`"],`+
			`"authData":[{"id":"webauthn_handle","value":"aa"},{"id":"webauthn_assertion","value":"e30"}]}`),
		"cscSignHash": j("POST", "/csc/v2/signatures/signHash", `{"credentialID":"c1","SAD":"sad","hashes":["`+zeroHash+`"],"signAlgo":"1.2.840.10045.4.3.2"}`),
		"remoteEnrol": j("POST", "/v1/remote/credentials", `{"nationalCode":"0499370899","councilNumber":"123456","name":"Dr A",`+
			`"identityCheck":{"method":"national-id-card"}}`),
		"remoteListCredentials": plain("GET", "/v1/remote/credentials?councilNumber=123456"),
		"remoteGetCredential":   plain("GET", "/v1/remote/credentials/c1"),
		"remoteRegistration":    plain("POST", "/v1/remote/credentials/c1/registration"),
		"remoteSuspend":         j("POST", "/v1/remote/credentials/c1/suspend", `{"reason":"on leave"}`),
		"remoteResume":          plain("POST", "/v1/remote/credentials/c1/resume"),
		"remoteBlock":           j("POST", "/v1/remote/credentials/c1/block", `{"reason":"lost"}`),
		"remoteRevoke":          j("POST", "/v1/remote/credentials/c1/revoke", `{"reason":1}`),
		"remoteRekey":           plain("POST", "/v1/remote/credentials/c1/rekey"),
		"remoteCardChallenge":   j("POST", "/v1/remote/card-challenges", `{"purpose":"register","credentialId":"c1"}`),
		"remoteAddCard": j("POST", "/v1/remote/credentials/c1/cards", `{"challengeId":"cc1","certificate":"AAAA",`+
			`"signature":"`+strings.Repeat("A", 86)+`"}`),
		"approve": func() call {
			// A fresh approval requested by a third operator, so that both the operator and the admin may approve.
			r := e.do(callerOp2, "POST", "/v1/ca/intermediate/rekey", "", nil)
			if r.status != http.StatusAccepted {
				t.Fatalf("setup approval: %d %s", r.status, r.body)
			}
			var ap approval
			if err := json.Unmarshal(r.body, &ap); err != nil {
				t.Fatal(err)
			}
			return call{method: "POST", path: "/v1/approvals/" + ap.ID + "/approve"}
		},
	}
}

// zeroHash is a base64 SHA-256-sized hash for the CSC calls.
const zeroHash = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// matrixCallers are the callers of the matrix test: every role, the admin credential, no credential, and
// certificates that must not be accepted.
var matrixCallers = []string{
	callerNone, callerAdmin, string(RoleOperator), string(RoleRAOfficer), string(RoleAuditor), string(RoleFacility),
	callerOtherFa, string(RolePhysician), string(RolePharmacy), string(RoleInsurer),
	callerExpired, callerRevoked, callerOtherCA, callerNoRole,
}

// callerRole is the role a caller's credential gives, "" for none or a rejected one.
func callerRole(c string) Role {
	switch c {
	case callerAdmin:
		return RoleOperator
	case callerOtherFa:
		return RoleFacility
	case callerNone, callerExpired, callerRevoked, callerOtherCA, callerNoRole:
		return ""
	}
	return Role(c)
}

// wantStatus is what the access matrix says caller gets from rt.
func wantStatus(rt *route, caller string) int {
	if rt.public {
		return rt.okStatus
	}
	role := callerRole(caller)
	if role == "" {
		if caller == callerNone && rt.loopback {
			return rt.okStatus // the test runs on loopback
		}
		return http.StatusUnauthorized
	}
	switch rt.roles[role] {
	case allow:
		return rt.okStatus
	case own:
		if caller == callerOtherFa {
			return http.StatusForbidden
		}
		return rt.okStatus
	}
	return http.StatusForbidden
}

// serviceCalled says whether an allowed call of op must reach a service.
var noServiceCall = map[string]bool{
	"healthz": true, "readyz": true, "metrics": true, "openapi": true, "whoami": true, "listApprovals": true,
	"cscInfo": true, // public and static
	// Dual control: the first call only records a pending approval.
	"revokeIntermediate": true, "rekeyIntermediate": true, "destroyKey": true, "setTrustAnchors": true,
}

func TestAccessMatrix(t *testing.T) {
	e := newEnv(t, nil)
	calls := validCalls(t, e)
	for _, rt := range routes {
		mk, ok := calls[rt.op]
		if !ok {
			t.Fatalf("no valid call for %s %s (%s): add one to validCalls", rt.method, rt.pattern, rt.op)
		}
		for _, caller := range matrixCallers {
			t.Run(rt.op+"/"+caller, func(t *testing.T) {
				e.t = t
				c := mk()
				e.rec.reset()
				e.adm.actors = nil
				r := e.do(caller, c.method, c.path, c.ctype, c.body)
				want := wantStatus(rt, caller)
				if r.status != want {
					t.Fatalf("%s %s as %s: status %d, want %d; body %s", c.method, c.path, caller, r.status, want, r.body)
				}
				if want >= 400 {
					checkProblem(t, r, want)
					// A route owned by record reads the object before it can refuse.
					if n := e.rec.total(); n != 0 && rt.ownParam != ownByRecord {
						t.Fatalf("refused call reached a service %d times: %v", n, e.rec.calls)
					}
					return
				}
				if !noServiceCall[rt.op] && !rt.public && e.rec.total() == 0 {
					t.Fatalf("allowed call did not reach its service")
				}
				if rt.dual && e.rec.total() != 0 {
					t.Fatalf("dual-control request executed at once: %v", e.rec.calls)
				}
				if rt.op == "whoami" {
					var w whoami
					if err := json.Unmarshal(r.body, &w); err != nil || w.Role != callerRole(caller) {
						t.Fatalf("whoami %s: %+v %v", r.body, w, err)
					}
				}
			})
		}
	}
}

// TestAccessMatrixCoversRoutes: every role is mentioned or deliberately absent; public routes have no roles.
func TestAccessMatrixConsistency(t *testing.T) {
	if _, err := matrixIndex(routes); err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.public && len(rt.roles) > 0 {
			t.Errorf("%s is public but lists roles", rt.key())
		}
		if !strings.HasPrefix(rt.pattern, "/v1/") && !strings.HasPrefix(rt.pattern, "/csc/v2/") && !rt.public && !rt.loopback {
			t.Errorf("%s outside /v1 must be public or loopback", rt.key())
		}
		// An insurer may only verify, read stored prescriptions and read the prescribers' standing history
		// (what a verification needs).
		if rt.roles[RoleInsurer] != deny && rt.op != "verify" && rt.op != "verifyBatch" && rt.op != "verifySealed" && rt.op != "whoami" && rt.op != "getPrescription" &&
			rt.op != "physicianHistory" {
			t.Errorf("insurer may call %s", rt.key())
		}
		// A facility sees only its own tokens.
		if strings.Contains(rt.pattern, "{siamID}") && rt.roles[RoleFacility] == allow {
			t.Errorf("facility has unscoped access to %s", rt.key())
		}
	}
}

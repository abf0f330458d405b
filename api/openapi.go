package api

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// The OpenAPI 3.1 document is generated from the route table (matrix.go) and the Go types of the request and
// response bodies, so it cannot drift from the router; TestOpenAPIMatchesRoutes checks it against chi.Walk in
// both directions and validates it with kin-openapi.

// bodyTypes names the Go types of JSON bodies by operationId: request first, response second.
var bodyTypes = map[string][2]any{
	"healthz":          {nil, map[string]string{}},
	"readyz":           {nil, map[string]string{}},
	"whoami":           {nil, whoami{}},
	"issueCertificate": {issueBody{}, certView{}},
	"listCertificates": {nil, struct {
		Certificates []certView `json:"certificates"`
	}{}},
	"getCertificate":      {nil, certView{}},
	"revokeCertificate":   {revokeBody{}, map[string]any{}},
	"holdCertificate":     {nil, map[string]any{}},
	"releaseCertificate":  {nil, map[string]any{}},
	"createEnrolmentCode": {enrolmentCodeBody{}, map[string]any{}},
	"enrol":               {enrolBody{}, Token{}},
	"listTokens": {nil, struct {
		Tokens []Token `json:"tokens"`
	}{}},
	"revokeToken":        {nil, map[string]string{}},
	"renewToken":         {nil, nil},
	"revocationFeed":     {nil, RevocationChanges{}},
	"importFacilities":   {facilityImport{}, ImportResult{}},
	"importPhysicians":   {physicianImport{}, ImportResult{}},
	"facilityStanding":   {nil, Standing{}},
	"physicianStanding":  {nil, Standing{}},
	"physicianHistory":   {nil, RegistrationHistory{}},
	"ingestPrescription": {nil, ingestResult{}},
	"getPrescription":    {nil, StoredPrescription{}},
	"verify":             {nil, map[string]any{}},
	"auditVerify":        {nil, AuditVerification{}},
	"auditInclusion":     {nil, proofView{}},
	"auditConsistency":   {nil, proofView{}},
	"revokeIntermediate": {revokeIntermediateBody{}, approval{}},
	"rekeyIntermediate":  {nil, approval{}},
	"destroyKey":         {nil, approval{}},
	"setTrustAnchors":    {trustAnchorsBody{}, approval{}},
	"listApprovals": {nil, struct {
		Approvals []approval `json:"approvals"`
	}{}},
	"approve": {nil, map[string]any{}},
}

var rePathParam = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)

// openAPIPath turns a chi pattern into an OpenAPI path template: the trailing wildcard of the OCSP GET route
// becomes {req}.
func openAPIPath(pattern string) string {
	if strings.HasSuffix(pattern, "/*") {
		return strings.TrimSuffix(pattern, "*") + "{req}"
	}
	return pattern
}

func buildOpenAPI(version string) ([]byte, error) {
	paths := map[string]map[string]any{}
	for _, rt := range routes {
		p := openAPIPath(rt.pattern)
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		op := map[string]any{
			"operationId": rt.op,
			"summary":     rt.summary,
			"tags":        []string{rt.tag},
		}
		var params []any
		for _, m := range rePathParam.FindAllStringSubmatch(p, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.query {
			typ := "string"
			if q.integer {
				typ = "integer"
			}
			qp := map[string]any{"name": q.name, "in": "query", "required": q.required, "schema": map[string]any{"type": typ}}
			if q.desc != "" {
				qp["description"] = q.desc
			}
			params = append(params, qp)
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch {
		case rt.public:
			op["security"] = []any{}
		case rt.loopback:
			op["security"] = []any{map[string]any{"mutualTLS": []string{}}, map[string]any{"adminBearer": []string{}}, map[string]any{}}
		default:
			op["security"] = []any{map[string]any{"mutualTLS": []string{}}, map[string]any{"adminBearer": []string{}}}
		}
		if !rt.public {
			rs := map[string]string{}
			for role, a := range rt.roles {
				switch a {
				case allow:
					rs[string(role)] = "any"
				case own:
					rs[string(role)] = "own:" + rt.ownParam
				}
			}
			op["x-mohr-roles"] = rs
		}
		if rt.dual {
			op["x-mohr-dual-control"] = true
		}
		types := bodyTypes[rt.op]
		if len(rt.reqTypes) > 0 {
			content := map[string]any{}
			for _, ct := range rt.reqTypes {
				content[ct] = map[string]any{"schema": schemaFor(ct, types[0])}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		ok := map[string]any{"description": "success"}
		if rt.respType != "" {
			ok["content"] = map[string]any{rt.respType: map[string]any{"schema": schemaFor(rt.respType, types[1])}}
		}
		op["responses"] = map[string]any{
			itoa(rt.okStatus): ok,
			"default": map[string]any{"description": "RFC 9457 problem document",
				"content": map[string]any{ProblemContentType: map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}},
		}
		paths[p][strings.ToLower(rt.method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Mohr API",
			"version":     version,
			"description": "PKI, adapter tokens, signing and verification for the health information exchange. Access per role: x-mohr-roles; docs/access-matrix.md.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"mutualTLS":   map[string]any{"type": "mutualTLS", "description": "Client certificate from the health intermediate CA"},
				"adminBearer": map[string]any{"type": "http", "scheme": "bearer", "description": "Local admin credential, loopback only"},
			},
			"schemas": map[string]any{"Problem": schemaOf(reflect.TypeOf(Problem{}))},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func schemaFor(ct string, v any) map[string]any {
	if strings.HasPrefix(ct, ctJSON) && v != nil {
		return schemaOf(reflect.TypeOf(v))
	}
	if strings.HasPrefix(ct, "text/") || ct == ctNDJSON {
		return map[string]any{"type": "string"}
	}
	if strings.HasPrefix(ct, ctJSON) {
		return map[string]any{"type": "object"}
	}
	return map[string]any{"type": "string", "contentMediaType": ct}
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// schemaOf is a small JSON Schema (2020-12) generator for the body types: objects are closed
// (additionalProperties false) because the decoder rejects unknown fields.
func schemaOf(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object"}
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type)
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}

// Package api is Mohr's HTTP API: routing on go-chi, authentication (mTLS client certificates from the health
// intermediate CA, and a local admin bearer credential on loopback), role-based access control from one access
// matrix, request validation, RFC 9457 problem documents, an OpenAPI 3.1 document, rate limits and Prometheus
// metrics.
//
// The handlers depend only on the small interfaces this package declares in services.go; the composition root
// (cmd/mohr) wires the real implementations. A nil service makes its routes answer 501 problem documents, so the
// server can run before every capability exists.
//
// Errors become HTTP here and nowhere else. Internal, HSM and SQL detail never reaches a client: unknown errors
// answer 500 with a generic title and an opaque id that the access log records next to the error.
//
// The access matrix (matrix.go, rendered in docs/access-matrix.md) is enforced in one place, the enforce
// middleware, which looks the matched route pattern up in the matrix. A route that is not in the matrix cannot be
// mounted.
package api

package api

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// net/http answers requests it cannot parse (a malformed request line such as GET /ocsp/%zz, bad headers, an
// oversized header block, an unsupported transfer encoding) itself, before any handler runs, by writing a
// fixed text/plain response straight to the connection. ProblemListener turns those into RFC 9457 problem
// documents like every other answer, so a relying party's client (or an attacker's) never sees a body Mohr did
// not write. It recognises the exact header block net/http uses for them (net/http server.go, errorHeaders)
// in a single Write, which is how net/http writes them.
//
// It wraps plain-TCP listeners only: behind TLS, net/http needs the *tls.Conn itself (for Request.TLS and
// HTTP/2), so the TLS listener keeps net/http's text for requests that do not parse.
func ProblemListener(ln net.Listener) net.Listener { return problemListener{ln} }

type problemListener struct{ net.Listener }

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c}, nil
}

type problemConn struct{ net.Conn }

var (
	rawErrorPrefix  = []byte("HTTP/1.1 ")
	rawErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
)

func (c *problemConn) Write(b []byte) (int, error) {
	if len(b) < 12 || !bytes.HasPrefix(b, rawErrorPrefix) || !bytes.Contains(b, rawErrorHeaders) {
		return c.Conn.Write(b)
	}
	status, err := strconv.Atoi(string(b[9:12]))
	if err != nil || status < 400 || status > 599 {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(rawProblem(status)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// rawProblem is a complete HTTP/1.1 response carrying the problem document for status.
func rawProblem(status int) []byte {
	k := probMalformed
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		k = problemKind{"headers-too-large", "The request headers are too large", status}
	case http.StatusNotImplemented:
		k = problemKind{"not-implemented", "Not implemented", status}
	default:
		if status != http.StatusBadRequest {
			k = problemKind{"malformed", http.StatusText(status), status}
		}
	}
	body, _ := json.Marshal(newProblem(k, "the request could not be parsed as HTTP"))
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: " + ProblemContentType + "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n")
	b.WriteString("Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// NotFound answers a problem document 404 with detail; for handlers in front of the API (the public listener's
// path filter).
func NotFound(w http.ResponseWriter, detail string) {
	writeProblem(w, newProblem(probNotFound, detail))
}

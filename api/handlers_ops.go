package api

import (
	"encoding/json"
	"net/http"
	"strings"
)

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ctJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeBytes writes a binary body with its media type.
func writeBytes(w http.ResponseWriter, status int, ct string, b []byte) {
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.svc.Ready != nil {
		if err := s.svc.Ready.Ready(r.Context()); err != nil {
			s.noteError(r, err, "")
			s.problem(w, probUnavailable, "")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeBytes(w, http.StatusOK, ctJSON, s.openapi)
}

type whoami struct {
	Role          Role   `json:"role"`
	Subject       string `json:"subject"`
	SIAMID        string `json:"siamId,omitempty"`
	NationalCode  string `json:"nationalCode,omitempty"`
	CouncilNumber string `json:"councilNumber,omitempty"`
	// Name and Organisation are the certificate's subject CN and O (an insurer or pharmacy names itself there).
	Name         string `json:"name,omitempty"`
	Organisation string `json:"organisation,omitempty"`
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	id, _ := IdentityFrom(r.Context())
	wi := whoami{Role: id.Role, Subject: id.Subject, SIAMID: id.SIAMID, NationalCode: id.NationalCode, CouncilNumber: id.CouncilNumber}
	if id.Cert != nil {
		wi.Name, wi.Organisation = id.Cert.Subject.CommonName, strings.Join(id.Cert.Subject.Organization, ", ")
	}
	writeJSON(w, http.StatusOK, wi)
}

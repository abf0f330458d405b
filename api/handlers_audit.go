package api

import (
	"net/http"
)

func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.svc.Audit.LatestCheckpoint(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBytes(w, http.StatusOK, ctText, cp)
}

func (s *Server) handleAuditVerify(w http.ResponseWriter, r *http.Request) {
	res, err := s.svc.Audit.Verify(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type proofView struct {
	Proof [][]byte `json:"proof"` // base64 of each hash, RFC 6962 order
}

func (s *Server) handleInclusion(w http.ResponseWriter, r *http.Request) {
	index, err := queryInt(r, "index")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	size, err := queryInt(r, "size")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if index >= size {
		s.fail(w, r, invalid("index must be less than size"))
		return
	}
	p, err := s.svc.Audit.ProveInclusion(r.Context(), index, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if p == nil {
		p = [][]byte{}
	}
	writeJSON(w, http.StatusOK, proofView{Proof: p})
}

func (s *Server) handleConsistency(w http.ResponseWriter, r *http.Request) {
	oldSize, err := queryInt(r, "old")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	newSize, err := queryInt(r, "new")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if oldSize == 0 || oldSize > newSize {
		s.fail(w, r, invalid("old must be at least 1 and at most new"))
		return
	}
	p, err := s.svc.Audit.ProveConsistency(r.Context(), oldSize, newSize)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if p == nil {
		p = [][]byte{}
	}
	writeJSON(w, http.StatusOK, proofView{Proof: p})
}

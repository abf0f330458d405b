package api

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/mohr-hix/mohr/internal/ids"
)

// maxImportRecords bounds one import call; larger registries are imported in several calls.
const maxImportRecords = 100_000

// facilityImport is the JSON body of POST /v1/registry/facilities.
type facilityImport struct {
	Facilities []FacilityRecord `json:"facilities"`
}

// physicianImport is the JSON body of POST /v1/registry/physicians.
type physicianImport struct {
	Physicians []PhysicianRecord `json:"physicians"`
}

var (
	licenceStatuses   = map[string]bool{"active": true, "suspended": true, "expired": true, "revoked": true}
	physicianStatuses = map[string]bool{"active": true, "suspended": true, "expired": true}
)

func recordErr(i int, what string) error { return invalid(fmt.Sprintf("record %d: %s", i, what)) }

func (b *facilityImport) validate() error {
	if len(b.Facilities) == 0 || len(b.Facilities) > maxImportRecords {
		return invalid(fmt.Sprintf("facilities must hold 1 to %d records", maxImportRecords))
	}
	seen := make(map[string]bool, len(b.Facilities))
	for i := range b.Facilities {
		f := &b.Facilities[i]
		var err error
		if f.SIAMID, err = ids.SIAMID(f.SIAMID); err != nil {
			return recordErr(i, "siamId is not a SIAM ID")
		}
		if seen[f.SIAMID] {
			return recordErr(i, "siamId appears twice")
		}
		seen[f.SIAMID] = true
		if f.LicenceNumber, err = ids.LicenceNumber(f.LicenceNumber); err != nil {
			return recordErr(i, "licenceNumber is not a licence number")
		}
		if f.Name == "" || len(f.Name) > 256 || len(f.LicenceIssuer) > 256 || len(f.SystemCertID) > 128 {
			return recordErr(i, "name is required; name, licenceIssuer and systemCertId are bounded")
		}
		if !licenceStatuses[f.LicenceStatus] {
			return recordErr(i, "licenceStatus must be active, suspended, expired or revoked")
		}
		if f.LicenceNotAfter.IsZero() {
			return recordErr(i, "licenceNotAfter is required")
		}
	}
	return nil
}

func (b *physicianImport) validate() error {
	if len(b.Physicians) == 0 || len(b.Physicians) > maxImportRecords {
		return invalid(fmt.Sprintf("physicians must hold 1 to %d records", maxImportRecords))
	}
	seen := make(map[string]bool, len(b.Physicians))
	for i := range b.Physicians {
		p := &b.Physicians[i]
		var err error
		if p.NationalCode, err = ids.NationalCode(p.NationalCode); err != nil {
			return recordErr(i, "nationalCode is not a valid national code")
		}
		if p.CouncilNumber, err = ids.CouncilNumber(p.CouncilNumber); err != nil {
			return recordErr(i, "councilNumber is not a medical-council number")
		}
		if seen[p.CouncilNumber] {
			return recordErr(i, "councilNumber appears twice")
		}
		seen[p.CouncilNumber] = true
		if p.Name == "" || len(p.Name) > 256 || len(p.Specialty) > 256 {
			return recordErr(i, "name is required; name and specialty are bounded")
		}
		if !physicianStatuses[p.Status] {
			return recordErr(i, "status must be active, suspended or expired")
		}
		if p.RegisteredUntil.IsZero() {
			return recordErr(i, "registeredUntil is required")
		}
	}
	return nil
}

func (s *Server) handleImportFacilities(w http.ResponseWriter, r *http.Request) {
	var b facilityImport
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := b.validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.svc.Registry.ImportFacilities(r.Context(), b.Facilities, actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleImportPhysicians(w http.ResponseWriter, r *http.Request) {
	var b physicianImport
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := b.validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.svc.Registry.ImportPhysicians(r.Context(), b.Physicians, actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleFacilityStanding(w http.ResponseWriter, r *http.Request) {
	siam, err := siamParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.svc.Registry.FacilityStanding(r.Context(), siam)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handlePhysicianStanding(w http.ResponseWriter, r *http.Request) {
	n, err := ids.CouncilNumber(chi.URLParam(r, "councilNumber"))
	if err != nil {
		s.fail(w, r, malformed("councilNumber is not a medical-council number"))
		return
	}
	st, err := s.svc.Registry.PhysicianStanding(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handlePhysicianHistory(w http.ResponseWriter, r *http.Request) {
	n, err := ids.CouncilNumber(chi.URLParam(r, "councilNumber"))
	if err != nil {
		s.fail(w, r, malformed("councilNumber is not a medical-council number"))
		return
	}
	h, err := s.svc.Registry.PhysicianHistory(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

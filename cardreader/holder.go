package cardreader

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
	"github.com/mohr-hix/mohr/internal/ids"
)

// Holder is the card holder's data as a card profile stores it. Fields a profile does not carry are empty.
type Holder struct {
	Profile       string `json:"profile"`
	NationalCode  string `json:"nationalCode,omitempty"`
	GivenName     string `json:"givenName,omitempty"`
	FamilyName    string `json:"familyName,omitempty"`
	BirthDate     string `json:"birthDate,omitempty"` // YYYY-MM-DD
	CardNumber    string `json:"cardNumber,omitempty"`
	Expiry        string `json:"expiry,omitempty"` // YYYY-MM-DD
	CouncilNumber string `json:"councilNumber,omitempty"`
	Specialty     string `json:"specialty,omitempty"`
}

// maxHolderField bounds each text field of the holder file.
const maxHolderField = 256

// ParseHolder parses the holder-data file of the national ID and council profiles (docs/cards.md): a
// template '65' of private-class objects. The national code must pass its checksum (DOMAIN.md), dates
// must be real YYYYMMDD dates and text must be UTF-8; unknown tags are skipped.
func ParseHolder(b []byte) (*Holder, error) {
	t, _, err := tlv.ReadOne(b)
	if err != nil {
		return nil, fmt.Errorf("%w: holder file: %v", ErrMalformed, err)
	}
	if t.Tag != cardfmt.TagHolderTemplate {
		return nil, fmt.Errorf("%w: holder file: tag %X, want 65", ErrMalformed, t.Tag)
	}
	objs, err := tlv.Parse(t.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: holder file: %v", ErrMalformed, err)
	}
	h := &Holder{}
	for _, o := range objs {
		if len(o.Value) > maxHolderField || !utf8.Valid(o.Value) {
			return nil, fmt.Errorf("%w: holder field %X", ErrMalformed, o.Tag)
		}
		v := string(o.Value)
		switch o.Tag {
		case cardfmt.TagNationalCode:
			c, err := ids.NationalCode(v)
			if err != nil {
				return nil, fmt.Errorf("%w: national code on card: %w", ErrMalformed, err)
			}
			h.NationalCode = c
		case cardfmt.TagGivenName:
			h.GivenName = v
		case cardfmt.TagFamilyName:
			h.FamilyName = v
		case cardfmt.TagBirthDate:
			if h.BirthDate, err = cardDate(v); err != nil {
				return nil, err
			}
		case cardfmt.TagExpiry:
			if h.Expiry, err = cardDate(v); err != nil {
				return nil, err
			}
		case cardfmt.TagCardNumber:
			h.CardNumber = v
		case cardfmt.TagCouncilNumber:
			c, err := ids.CouncilNumber(v)
			if err != nil {
				return nil, fmt.Errorf("%w: council number on card: %w", ErrMalformed, err)
			}
			h.CouncilNumber = c
		case cardfmt.TagSpecialty:
			h.Specialty = v
		}
	}
	return h, nil
}

// cardDate turns YYYYMMDD into YYYY-MM-DD, rejecting dates that do not exist.
func cardDate(s string) (string, error) {
	t, err := time.Parse("20060102", s)
	if err != nil {
		return "", fmt.Errorf("%w: date %q on card", ErrMalformed, s)
	}
	return t.Format(time.DateOnly), nil
}

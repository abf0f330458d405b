package cardreader

import (
	"context"
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
)

// Profile names, as used in card: URIs and on the command line.
const (
	ProfileNationalID = "national-id"
	ProfileCouncil    = "medical-council"
	ProfilePIV        = "piv"
)

// Detect returns the name of the first profile whose application the card selects: medical-council,
// national-id, then piv (with the default profiles). ErrNotFound if none.
func Detect(ctx context.Context, c *Card) (string, error) {
	for _, p := range []struct {
		name string
		aid  []byte
	}{{ProfileCouncil, cardfmt.CouncilAID}, {ProfileNationalID, cardfmt.NationalIDAID}, {ProfilePIV, cardfmt.PIVAID}} {
		_, err := c.selectAID(ctx, p.aid)
		if err == nil {
			return p.name, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: no known card application", ErrNotFound)
}

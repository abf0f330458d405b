package tokens_test

import (
	"testing"

	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/storetest"
)

func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokens.Store { return tokens.NewMemStore() })
}

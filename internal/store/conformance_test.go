package store_test

import (
	"testing"

	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.OpenTestSQLite(t) })
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.OpenTestPostgres(t) })
}

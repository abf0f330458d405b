package adapter_test

import (
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/tokens"
)

func tokentestEvent() audit.Event {
	return audit.Event{Time: time.Now().UTC(), Kind: "test", Actor: "test"}
}

func tokensStanding(x *exchange) adapter.StandingChecker {
	return tokens.Standing{Registry: x.store, Clock: x.clock.Now}
}

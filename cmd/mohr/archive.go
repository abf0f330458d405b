package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/signing"
)

// Archive-timestamp renewal of stored prescriptions (docs/signature-policy.md §4, docs/signing.md): each
// prescription carries when its archive timestamp is next due (window before the TSA certificate it relies on
// expires); a pass takes the due ones, adds an archive-time-stamp-v3 with the node's TSA, checks that the result
// verifies at B-LTA, and replaces the stored signature only if no other node did first.

func init() { rootCmd.AddCommand(newArchiveCmd()) }

func newArchiveCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "archive", Short: "Archive timestamps (B-LTA) of stored prescriptions"}
	cmd.AddCommand(&cobra.Command{
		Use:   "renew",
		Short: "Add an archive timestamp to every stored prescription whose renewal is due (what mohr serve does hourly)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			n, err := build(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer n.close()
			done, failed, err := n.renewArchives(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "renewed %d archive timestamps, %d failed\n", done, failed)
			if err == nil && failed > 0 {
				err = fmt.Errorf("%d renewals failed (see the log)", failed)
			}
			return err
		},
	})
	return cmd
}

// archiveDue is when sig's archive timestamp must next be renewed; zero when it cannot be read (such a record
// is never picked up, and the verifier reports on it).
func archiveDue(sig []byte, window time.Duration, trust *signing.TrustPolicy) time.Time {
	t, err := signing.NextArchiveDueUnder(sig, window, trust)
	if err != nil {
		return time.Time{}
	}
	return t
}

// archivePage is how many due prescriptions one store call returns.
const archivePage = 100

// renewArchives renews every prescription due now. A failed renewal is logged and counted; the record stays due
// and is tried again next pass.
func (n *node) renewArchives(ctx context.Context) (done, failed int, err error) {
	window := time.Duration(n.cfg.Archive.RenewWindow)
	now := n.cfg.clock()
	skip := map[string]bool{}
	for {
		recs, err := n.st.PrescriptionsDue(ctx, now(), archivePage+len(skip))
		if err != nil {
			return done, failed, err
		}
		progress := false
		for _, rec := range recs {
			if skip[rec.ID] {
				continue
			}
			if err := n.renewOne(ctx, rec, window); err != nil {
				n.log.Error("archive renewal", "prescription", rec.ID, "err", err)
				skip[rec.ID] = true
				failed++
				continue
			}
			progress = true
			done++
		}
		if !progress || len(recs) < archivePage+len(skip) {
			return done, failed, nil
		}
	}
}

func (n *node) renewOne(ctx context.Context, rec store.PrescriptionRecord, window time.Duration) error {
	out, err := signing.AddArchiveTimestamp(ctx, rec.Signature, n.tsa)
	if err != nil {
		return err
	}
	r := n.vs.Load().v.Verify(ctx, out)
	if !r.Passed() || r.Level != "B-LTA" {
		return fmt.Errorf("renewed signature does not verify: %s", r.Summary())
	}
	trust := n.vs.Load().v.Trust()
	due, err := signing.NextArchiveDueUnder(out, window, &trust)
	if err != nil {
		return err
	}
	if !due.After(n.cfg.clock()()) {
		return fmt.Errorf("the TSA certificate expires, or an algorithm it uses ends, within the renewal window (%s): renew it first", due.Format(time.RFC3339))
	}
	ev := newEvent("rx.archived", "system:archive", rec.ID, map[string]any{"archive_timestamps": len(r.Timestamps), "next_due": due})
	err = n.st.UpdatePrescriptionSignature(ctx, rec.ID, rec.Signature, out, due, ev)
	if errors.Is(err, store.ErrStaleSignature) {
		return nil // another node renewed it
	}
	return err
}

// archiveLoop runs renewArchives every archive.interval.
func (n *node) archiveLoop(ctx context.Context) error {
	t := time.NewTicker(time.Duration(n.cfg.Archive.Interval))
	defer t.Stop()
	for {
		if _, _, err := n.renewArchives(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("archive renewal", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// upgrader implements api.SignatureUpgrader with the node's ingestion services.
type upgrader struct{ n *node }

func (u upgrader) Upgrade(ctx context.Context, der []byte, level string) ([]byte, error) {
	out, _, err := u.n.vs.Load().ingest.Upgrade(ctx, der, level)
	switch {
	case errors.Is(err, signing.ErrRejected), errors.Is(err, signing.ErrLevel), errors.Is(err, signing.ErrMalformed):
		return nil, invalid(err)
	case errors.Is(err, signing.ErrStaleRevocation), errors.Is(err, signing.ErrTimestamp):
		return nil, unavailableError{err}
	}
	return out, err
}

// prescriptionReader implements api.PrescriptionReader with the store.
type prescriptionReader struct{ st appStore }

func (p prescriptionReader) Prescription(ctx context.Context, id string) (api.StoredPrescription, error) {
	rec, err := p.st.Prescription(ctx, id)
	if err != nil {
		return api.StoredPrescription{}, err
	}
	return api.StoredPrescription{ID: rec.ID, ReceivedAt: rec.ReceivedAt, SigningTime: rec.SigningTime, Indication: rec.Indication,
		PrescriberCouncilNumber: rec.CouncilNumber, Signature: rec.Signature, SealedReport: rec.SealedReport, Submitter: rec.Submitter}, nil
}

package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hookd/hookd"
)

var bucketRecords = []byte("records")

// Record is what hookd knows of one runtime's digests; webhook, poll and admin all update it.
type Record struct {
	Runtime       string        `json:"runtime"`
	SeenDigest    string        `json:"seen_digest,omitempty"` // what the registry last said the tag points to
	SeenAt        time.Time     `json:"seen_at,omitzero"`
	SeenVia       hookd.Trigger `json:"seen_via,omitempty"` // webhook, poll or admin
	RunningDigest string        `json:"running_digest,omitempty"`
	RunningAt     time.Time     `json:"running_at,omitzero"`
	FailedDigest  string        `json:"failed_digest,omitempty"` // not retried automatically
	FailedAt      time.Time     `json:"failed_at,omitzero"`
	FailedReason  string        `json:"failed_reason,omitempty"`
}

// UpdateRecord applies change to the runtime's record in one transaction and returns the result.
func (s *Store) UpdateRecord(runtime string, change func(*Record)) (Record, error) {
	var r Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := s.bucket(tx, bucketRecords)
		r = Record{}
		if _, err := getJSON(b, runtime, &r); err != nil {
			return err
		}
		r.Runtime = runtime
		change(&r)
		return putJSON(b, runtime, r)
	})
	if err != nil {
		return Record{}, fmt.Errorf("update record of %s: %w", runtime, err)
	}
	return r, nil
}

// Record returns the runtime's record (zero when none was kept yet).
func (s *Store) Record(runtime string) (Record, error) {
	var r Record
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := getJSON(s.bucket(tx, bucketRecords), runtime, &r)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("read record of %s: %w", runtime, err)
	}
	r.Runtime = runtime
	return r, nil
}

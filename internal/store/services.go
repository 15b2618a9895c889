package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketServiceJournal holds the Swarm service updates hookd submitted and has not seen end,
// one per engine like the other journals.
var bucketServiceJournal = []byte("service_journal")

// ServiceUpdate is the journal of one service update: written before it is submitted, cleared
// once Swarm's outcome is known. At a restart it tells whether the update went out (the spec's
// version moved past Version) and so that none is submitted twice for one digest.
type ServiceUpdate struct {
	Runtime       string    `json:"runtime"`
	ServiceID     string    `json:"service_id"`
	Service       string    `json:"service"` // its name, for logs and results
	Version       uint64    `json:"version"` // the spec's version index the update is submitted at
	Ref           string    `json:"ref"`     // the image submitted, "host/repo:tag@sha256:…"
	Digest        string    `json:"digest"`
	PreviousImage string    `json:"previous_image"`
	JobID         uint64    `json:"job_id"`
	At            time.Time `json:"at"`
}

func serviceKey(runtime, serviceID string) []byte { return []byte(runtime + "\x00" + serviceID) }

// WriteServiceUpdate durably records a service update about to be submitted.
func (s *Store) WriteServiceUpdate(u ServiceUpdate) error {
	raw, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("journal service %s of %s: %w", u.Service, u.Runtime, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketServiceJournal).Put(serviceKey(u.Runtime, u.ServiceID), raw)
	})
	if err != nil {
		return fmt.Errorf("journal service %s of %s: %w", u.Service, u.Runtime, err)
	}
	return nil
}

// ClearServiceUpdate forgets a service update whose outcome is known.
func (s *Store) ClearServiceUpdate(runtime, serviceID string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketServiceJournal).Delete(serviceKey(runtime, serviceID))
	})
	if err != nil {
		return fmt.Errorf("clear service journal %s of %s: %w", serviceID, runtime, err)
	}
	return nil
}

// ServiceUpdates returns the open service updates of runtime, or of every runtime when
// runtime is "".
func (s *Store) ServiceUpdates(runtime string) ([]ServiceUpdate, error) {
	var out []ServiceUpdate
	err := s.db.View(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketServiceJournal).ForEach(func(k, v []byte) error {
			if runtime != "" && !strings.HasPrefix(string(k), runtime+"\x00") {
				return nil
			}
			var u ServiceUpdate
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("service journal %q: %w", k, err)
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read service journal: %w", err)
	}
	return out, nil
}

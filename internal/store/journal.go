package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var bucketJournal = []byte("journal")

// Rollout steps, journaled before each is taken, in this order. A start-first switch
// (Switch.Order) takes create, start_temp, stop_old, rename_old, rename_new, switched: the
// replacement runs from start_temp on, and the old one is stopped before the names swap.
const (
	StepCreate    = "create"     // the replacement is being created under TempName
	StepStartTemp = "start_temp" // start-first: the replacement is started under TempName and gated beside the old one
	StepRenameOld = "rename_old" // the old container (still serving) is being renamed to AsideName
	StepRenameNew = "rename_new" // the replacement is taking Name
	StepStopOld   = "stop_old"   // the old container is being stopped and the replacement started
	StepStartNew  = "start_new"  // the replacement has started and is being gated
	StepSwitched  = "switched"   // the replacement passed its gate; the old one is kept for rollback
)

// Rollout is the journal of one runtime's rollout in progress.
type Rollout struct {
	Runtime    string             `json:"runtime"`
	JobID      uint64             `json:"job_id"`
	Ref        string             `json:"ref"`
	Image      string             `json:"image"`        // the runtime's tag, moved back on a revert
	OldImageID string             `json:"old_image_id"` // what the tag named before
	Cleanup    bool               `json:"cleanup"`      // remove replaced images on commit
	Committed  bool               `json:"committed"`    // every container switched: only old ones remain to remove
	Containers map[string]*Switch `json:"containers"`   // by Name
	// Dependents share a namespace of a container being replaced; they are switched after
	// their providers, and a revert restarts those it finds running on a provider it stopped.
	Dependents []Dependent `json:"dependents,omitempty"`
}

// Dependent is a container that shares the network, pid or ipc namespace of a provider.
type Dependent struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	WasRunning bool     `json:"was_running"`
	Providers  []string `json:"providers"` // IDs of the old containers whose namespaces it shares
}

// Switch is one container's progress.
type Switch struct {
	Name       string `json:"name"`
	OldID      string `json:"old_id"`
	OldImageID string `json:"old_image_id"`
	WasRunning bool   `json:"was_running"`
	TempName   string `json:"temp_name"`
	AsideName  string `json:"aside_name"`
	NewID      string `json:"new_id,omitempty"`
	Step       string `json:"step"`
	Seq        int    `json:"seq,omitempty"` // order in which the switches began, from 1
	// Order is "start-first" when the replacement was started before the old one stopped;
	// "" is stop-first.
	Order string `json:"order,omitempty"`
}

// WriteJournal durably records the rollout's state; it is called before each step is taken.
func (s *Store) WriteJournal(r *Rollout) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal %s: %w", r.Runtime, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketJournal).Put([]byte(r.Runtime), raw)
	})
	if err != nil {
		return fmt.Errorf("journal %s: %w", r.Runtime, err)
	}
	return nil
}

// ClearJournal forgets a rollout that ended.
func (s *Store) ClearJournal(runtime string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketJournal).Delete([]byte(runtime))
	})
	if err != nil {
		return fmt.Errorf("clear journal %s: %w", runtime, err)
	}
	return nil
}

// Journal returns the runtime's rollout in progress, if any.
func (s *Store) Journal(runtime string) (r *Rollout, ok bool, err error) {
	r = &Rollout{}
	err = s.db.View(func(tx *bolt.Tx) error {
		ok, err = getJSON(s.bucket(tx, bucketJournal), runtime, r)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read journal of %s: %w", runtime, err)
	}
	return r, ok, nil
}

// Journals returns every rollout that was in progress when hookd stopped.
func (s *Store) Journals() ([]*Rollout, error) {
	var out []*Rollout
	err := s.db.View(func(tx *bolt.Tx) error {
		return s.bucket(tx, bucketJournal).ForEach(func(k, v []byte) error {
			r := &Rollout{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("journal %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read journals: %w", err)
	}
	return out, nil
}

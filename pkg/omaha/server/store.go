package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The state file (Config.State) is a bbolt database with two buckets:
//
//	settings  group key (AllGroups = the default) → GroupSettings as JSON
//	hosts     app id + "/" + machine id    → Host as JSON
//
// Settings are written in their own transaction before they take effect
// (a failed write changes nothing); host updates are written through
// bolt's Batch, which commits concurrent check-ins in one transaction,
// before the response is sent.
var (
	bucketSettings = []byte("settings")
	bucketHosts    = []byte("hosts")
)

// GroupSettings is the rollout state of one group, or under AllGroups the
// default for groups without settings of their own.
type GroupSettings struct {
	Rollout int  `json:"rollout"` // percent 0-100 of machines offered the newest version
	Paused  bool `json:"paused"`  // hold every update back
}

// Host is one machine's row in the host table: what it last said and what
// it was last told.
type Host struct {
	MachineID  string     `json:"machine_id"`
	Alias      string     `json:"alias,omitempty"`
	AppID      string     `json:"appid"`
	Track      string     `json:"track"`
	Version    string     `json:"version"`
	LastSeen   time.Time  `json:"last_seen"`
	LastResult string     `json:"last_result,omitempty"`     // Result… of the last update check
	Offered    string     `json:"offered_version,omitempty"` // version offered by the last update check
	LastEvent  string     `json:"last_event,omitempty"`      // short form, RecordedEvent.String
	LastError  *HostError `json:"last_error,omitempty"`
}

// HostError is the last error event (eventresult 0) a host reported.
type HostError struct {
	Code    int64     `json:"code"` // as sent, flag bits included
	Time    time.Time `json:"time"`
	Version string    `json:"version"` // the host's version when it reported it
}

func hostKey(appID, machineID string) string {
	return normalizeAppID(appID) + "/" + machineID
}

type store struct {
	db *bolt.DB
}

// openStore opens (creating) the state file and reads what it holds.
func openStore(path string) (*store, map[string]GroupSettings, map[string]*Host, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			err = errors.New("locked by another process (is another server using it?)")
		}
		return nil, nil, nil, fmt.Errorf("omaha/server: state %s: %w", path, err)
	}
	settings := map[string]GroupSettings{}
	hosts := map[string]*Host{}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSettings, bucketHosts} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketSettings).ForEach(func(k, v []byte) error {
			var s GroupSettings
			if err := json.Unmarshal(v, &s); err != nil || s.Rollout < 0 || s.Rollout > 100 {
				return fmt.Errorf("settings of group %q: bad value %q", k, v)
			}
			settings[string(k)] = s
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			h := new(Host)
			if err := json.Unmarshal(v, h); err != nil {
				return fmt.Errorf("host %q: %v", k, err)
			}
			hosts[string(k)] = h
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, nil, nil, fmt.Errorf("omaha/server: state %s: %w", path, err)
	}
	return &store{db: db}, settings, hosts, nil
}

func (s *store) putSettings(group string, gs GroupSettings) error {
	v, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSettings).Put([]byte(group), v)
	})
}

// putHosts writes the rows as one (batched) transaction.
func (s *store) putHosts(rows map[string][]byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHosts)
		for k, v := range rows {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }

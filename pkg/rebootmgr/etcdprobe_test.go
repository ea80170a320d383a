package rebootmgr

import (
	"net"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// etcdProbe against a real etcd: nil when one endpoint answers (even after
// a dead one), else the reason for each endpoint.
func TestEtcdProbe(t *testing.T) {
	e := testenv.StartEtcd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now

	if err := etcdProbe(Config{Endpoints: []string{dead, e.Endpoint}})(t.Context()); err != nil {
		t.Errorf("a live endpoint after a dead one: %v", err)
	}
	bare := strings.TrimPrefix(e.Endpoint, "http://")
	if err := etcdProbe(Config{Endpoints: []string{bare}})(t.Context()); err != nil {
		t.Errorf("host:port endpoint %s: %v", bare, err)
	}
	err = etcdProbe(Config{Endpoints: []string{dead}})(t.Context())
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("dead endpoint: %v, want it named with connection refused", err)
	}
}

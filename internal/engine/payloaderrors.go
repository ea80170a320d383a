package engine

import "github.com/abupdate/update_engine/internal/status"

// payloadCode maps pkg/payload's sentinels (filled in when it lands).
func payloadCode(err error) (status.Code, bool) {
	return 0, false
}

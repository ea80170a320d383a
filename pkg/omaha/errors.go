package omaha

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors. Each names the update_engine code (SPEC.md section 7) it
// maps to; internal/engine does the mapping.
var (
	// ErrEmptyResponse: the Omaha response body was empty.
	// Code 30 (OmahaRequestEmptyResponseError).
	ErrEmptyResponse = errors.New("omaha: empty response")
	// ErrXMLParse: the Omaha response is not well-formed XML.
	// Code 31 (OmahaRequestXMLParseError).
	ErrXMLParse = errors.New("omaha: response is not valid XML")
	// ErrInvalidResponse: a required element or attribute is missing or
	// wrong (updatecheck, status, manifest, urls, package name/size, the
	// postinstall action or its sha256). Code 34 (OmahaResponseInvalid).
	ErrInvalidResponse = errors.New("omaha: invalid response")
	// ErrResponseTooLarge: the Omaha response exceeded Client.MaxResponseBytes;
	// carried inside an *HTTPError (the transfer was aborted), so code
	// 2000 + HTTP status.
	ErrResponseTooLarge = errors.New("omaha: response too large")
	// ErrHTTPStatus: the server answered with a non-2xx status; carried
	// inside an *HTTPError.
	ErrHTTPStatus = errors.New("omaha: HTTP error status")

	// ErrNoURL: a download was asked for with no URL to try.
	// Code 9 (DownloadTransferError).
	ErrNoURL = errors.New("omaha: no payload URL")
	// ErrBadContentRange: a resumed download's 206 answer does not start at
	// the requested offset. Code 9 (DownloadTransferError).
	ErrBadContentRange = errors.New("omaha: bad Content-Range")
	// ErrRangeNotSatisfiable: the payload server refused the resume offset
	// (416); restart from 0. Code 9 (DownloadTransferError).
	ErrRangeNotSatisfiable = errors.New("omaha: range not satisfiable")
	// ErrReadTimeout: no byte arrived within the read timeout.
	// Code 9 (DownloadTransferError) for payloads; in an *HTTPError for
	// Omaha requests.
	ErrReadTimeout = errors.New("omaha: read timeout")
)

// HTTPError is a failed Omaha request transfer: a non-2xx status, a
// network failure (StatusCode 0, no response), or a body that broke off
// (StatusCode of the response, Err says why). It maps to update_engine code
// 2000 + StatusCode (OmahaRequestHTTPResponseBase, status clamped to 999)
// for Omaha requests; for payload downloads the engine reports code 9.
type HTTPError struct {
	StatusCode int    // HTTP status; 0 when no response arrived
	URL        string // the URL that failed
	Err        error  // cause: ErrHTTPStatus, a network error, io.ErrUnexpectedEOF, ErrResponseTooLarge, ErrReadTimeout
	// RetryAfter is the answer's Retry-After delay; 0 when it has none, an
	// invalid one, or one already past.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	s := "omaha: request to " + e.URL + " failed"
	if e.StatusCode != 0 {
		s = "omaha: HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode) + " from " + e.URL
	}
	if e.Err != nil && e.Err != ErrHTTPStatus {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *HTTPError) Unwrap() error { return e.Err }

// Code is the update_engine code of a failed Omaha request:
// 2000 + StatusCode, the status clamped to 999 as FUE does.
func (e *HTTPError) Code() int32 {
	c := e.StatusCode
	if c < 0 || c >= 1000 {
		c = 999
	}
	return int32(2000 + c)
}

// Backoff reports whether err calls for the scheduler's doubling backoff:
// an answer with HTTP 500 or 503, exactly as FUE's update_check_scheduler
// (SPEC.md section 3). Other statuses, network failures and timeouts (no
// answer at all) keep the regular interval.
func Backoff(err error) bool {
	var he *HTTPError
	if !errors.As(err, &he) {
		return false
	}
	return he.StatusCode == http.StatusInternalServerError || he.StatusCode == http.StatusServiceUnavailable
}

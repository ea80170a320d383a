// Package status carries an update_engine error code up an error chain:
// WithCode attaches an omaha.Code to the error that caused it and CodeOf
// reads it back where the engine reports the failure (Omaha event, D-Bus
// GetLastAttemptError, metrics).
//
// The codes themselves are pkg/omaha's table (SPEC.md section 7) and the
// update status is pkg/update1's; this package only ties a code to a Go
// error. It is internal because which error gets which code is the
// engine's and its parts' policy, not part of any wire format.
package status

import (
	"errors"
	"fmt"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// CodeError attaches a Code to the error that caused it.
type CodeError struct {
	Code omaha.Code
	Err  error
}

// WithCode wraps err with code. A nil err stays nil.
func WithCode(code omaha.Code, err error) error {
	if err == nil {
		return nil
	}
	return &CodeError{Code: code, Err: err}
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("%v [%s]", e.Err, e.Code)
}

func (e *CodeError) Unwrap() []error { return []error{e.Err, e.Code} }

// CodeOf returns the code carried by err: the outermost *CodeError or Code in
// its chain, Success for nil, and Error for anything else.
func CodeOf(err error) omaha.Code {
	if err == nil {
		return omaha.Success
	}
	var ce *CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var c omaha.Code
	if errors.As(err, &c) {
		return c
	}
	return omaha.Error
}

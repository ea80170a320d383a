// Package crashpoint names every durable write of the daemon (a pref, the
// update record, a GPT write, a marker file) so crash tests can kill the
// real process just before any one of them.
//
// Hit is a no-op in normal builds. Built with the crashpoints tag (only
// crash tests do so), the process reads two environment variables:
//
//	UPDATE_ENGINE_CRASH_LOG=FILE  append "N NAME" for each point reached
//	UPDATE_ENGINE_CRASH_AT=N      SIGKILL the process at the N-th point,
//	                              before its write
package crashpoint

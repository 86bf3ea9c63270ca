/* rekindle: the driver lifecycle under spin.
 * The transition table (lifecycle_table.pml) is GENERATED from the Rust code
 * (`rekindle model export`); this file holds the hand-written environment:
 * the storage backend (flapping, then stable), the driver's setup call, the
 * retry and drain timers, the periodic publisher, the operator's SIGHUPs and
 * user operations, and the LTL properties. Run with `model/check.sh`.
 *
 * Fairness: every environment process delivers one message to the driver
 * actor as one atomic step. The real mailbox is FIFO and bounded, each sender
 * has at most one message of a kind in flight (publisher ticks coalesce), so
 * a sender that stays enabled is served after finitely many others: that is
 * weak fairness between processes (`pan -a -f`). The publisher ticking
 * forever cannot starve a setup completion.
 */
#include "lifecycle_table.pml"

#ifndef MAX_RELOADS
#define MAX_RELOADS 2
#endif

short st = 0;         /* the driver's abstract state (table row) */
byte running = 0;     /* setups in flight, as the shell sees them */
bool up = false;      /* the storage backend answers */
bool stable = false;  /* ... and will from now on */
byte reloads = 0;     /* SIGHUPs sent (bounded) */
bool initialized = false;

#define applies(e) (next_state[st * N_EVENTS + e] != NO_STATE)
#define ready (state_name[st] == S_READY)
#define draining (state_name[st] == S_DRAINING)
#define reload_pending (state_reload_pending[st] == 1)
#define health_lost (state_health_lost[st] == 1)
#define setting_up (state_name[st] == S_INITIALIZING || state_name[st] == S_RELOADING || state_name[st] == S_ROLLING_BACK)

inline deliver(e) {
  if
  :: applies(e) ->
       if
       :: aborts_setup[st * N_EVENTS + e] -> running--
       :: else -> skip
       fi;
       if
       :: e == E_SETUP_OK || e == E_SETUP_FAIL || e == E_SETUP_FATAL -> running--
       :: else -> skip
       fi;
       if
       :: runs_setup[st * N_EVENTS + e] -> running++
       :: else -> skip
       fi;
       st = next_state[st * N_EVENTS + e];
       /* at most one setup in flight per driver, always */
       assert(running <= 1)
  :: else -> skip
  fi
}

active proctype backend() {
  initialized;
  do
  :: !stable -> up = !up
  :: !stable -> up = true; stable = true
  :: stable -> break
  od
}

/* do_setup + check_for_setup_error of the running setup: succeeds when the
 * backend is up, fails (recoverable) or hangs until its deadline when not. */
active proctype setup_call() {
  initialized;
  do
  :: atomic { applies(E_SETUP_OK) && up -> deliver(E_SETUP_OK) }
  :: atomic { applies(E_SETUP_FAIL) && !up -> deliver(E_SETUP_FAIL) }
  :: atomic { applies(E_SETUP_DEADLINE) && !up -> deliver(E_SETUP_DEADLINE) }
  od
}

active proctype retry_timer() {
  initialized;
  do
  :: atomic { applies(E_RETRY_DUE) -> deliver(E_RETRY_DUE) }
  od
}

active proctype drain_timer() {
  initialized;
  do
  :: atomic { applies(E_DRAIN_DEADLINE) -> deliver(E_DRAIN_DEADLINE) }
  od
}

/* The periodic publisher: publishes (a stats call that fails while the
 * backend is down and the driver serves, Ready or draining: health lost),
 * or re-initializes a due driver. Its tick is
 * "late": every deadline has passed. While a setup runs against a backend
 * that answers, a tick that late cannot come first (the setup finishes well
 * within driver_init_timeout), so that tick waits for the setup. */
active proctype publisher() {
  initialized;
  do
  :: atomic { (ready || draining) && !up -> deliver(E_HEALTH_LOST) }
  :: atomic { !((ready || draining) && !up) && (running == 0 || !up) -> deliver(E_TICK) }
  od
}

active proctype operator() {
  initialized;
  do
  :: atomic { reloads < MAX_RELOADS -> reloads++; deliver(E_RELOAD_CHANGED) }
  :: atomic { reloads < MAX_RELOADS -> reloads++; deliver(E_RELOAD_SAME) }
  :: reloads == MAX_RELOADS -> break
  od
}

/* Operations: a call returns, or, while the backend is down, hangs until
 * its deadline and is abandoned (the backend is then not Ready). */
active proctype operations() {
  initialized;
  do
  :: atomic { applies(E_OP_START) -> deliver(E_OP_START) }
  :: atomic { applies(E_OP_FINISH) -> deliver(E_OP_FINISH) }
  :: atomic { applies(E_OP_TIMEOUT) && !up -> deliver(E_OP_TIMEOUT) }
  od
}

init {
  atomic {
    init_table();
    deliver(E_START);
    initialized = true
  }
}

/* A recoverable driver with unlimited budget whose backend stays up
 * eventually reaches Ready (and stays there). */
ltl live_ready { (<>[] stable) -> (<>[] ready) }
/* A reload request is always followed by its end. */
ltl reload_ends { [] (reload_pending -> <> !reload_pending) }
/* A drain terminates. */
ltl drain_ends { [] (draining -> <> !draining) }
/* A driver that lost its backend while draining is not Ready again until a
 * setup runs (an aborted or reverted reload does not bring it back). */
ltl lost_not_ready { [] (health_lost -> (!ready W setting_up)) }

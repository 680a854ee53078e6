//! Work that nothing waits on at once (encoding snapshots, writing their
//! files, compacting the log behind them) on threads at the lowest CPU
//! priority, so on a
//! busy machine it takes the time the request path leaves over instead of
//! competing with it.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs jobs in order at the lowest priority. Dropping it
/// waits for the queued jobs, so no file is written after the node stopped.
pub(crate) struct Background {
    jobs: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts the thread, named `name`.
    pub(crate) fn start(name: &str) -> Background {
        let (jobs, receiver) = std_mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                lower_thread_priority();
                while let Ok(job) = receiver.recv() {
                    job();
                }
            })
            .expect("spawn a background thread");
        Background {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Queues `job`.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            // The thread ends only when this sender is dropped.
            let _ = jobs.send(Box::new(job));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Gives the calling thread the lowest scheduling priority (nice 19): it
/// still runs when the machine is busy, at about 1/70 of the share of a
/// normal thread. On Linux a nice value is per thread; elsewhere this does
/// nothing rather than lower the whole process.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        let thread_id = unsafe { libc::syscall(libc::SYS_gettid) };
        // SAFETY: setpriority only reads its integer arguments. A failure
        // leaves the priority as it was, which is only slower for others.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id as libc::id_t, 19) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn jobs_run_in_order_and_dropping_waits_for_the_queued_ones() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let background = Background::start("test-background");
        for job in 0..20 {
            let done = Arc::clone(&done);
            background.run(move || {
                std::thread::sleep(std::time::Duration::from_millis(1));
                done.lock().unwrap().push(job);
            });
        }
        drop(background);
        assert_eq!(*done.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_background_thread_runs_at_the_lowest_priority() {
        fn own_priority() -> i32 {
            // SAFETY: as in `lower_thread_priority`.
            let thread_id = unsafe { libc::syscall(libc::SYS_gettid) };
            // SAFETY: getpriority only reads its integer arguments.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, thread_id as libc::id_t) }
        }
        let seen = Arc::new(Mutex::new(None));
        let background = Background::start("test-background");
        let slot = Arc::clone(&seen);
        background.run(move || *slot.lock().unwrap() = Some(own_priority()));
        drop(background);
        assert_eq!(*seen.lock().unwrap(), Some(19));
        // Only that thread: this one keeps its own priority.
        assert_ne!(own_priority(), 19);
    }
}

//! A fixed set of reader threads, each owning the SQLite connection it reads with, fed
//! from one queue.
//!
//! Reads used to run on tokio's blocking pool and wait there for a free connection:
//! a burst of reads (every controller listing at start-up, a thousand agents at
//! once) started one thread per waiting read, up to tokio's limit of 512, and each
//! left its stack and allocator pages behind. Here a burst waits in the queue
//! instead, and the number of threads is the number of connections.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

type Job = Box<dyn FnOnce(&Connection) + Send>;

pub(super) struct ReaderPool {
    jobs: mpsc::Sender<Job>,
}

impl ReaderPool {
    /// Starts one thread per connection. The threads end, closing their connections,
    /// when the pool is dropped.
    pub(super) fn start(connections: Vec<Connection>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for (i, conn) in connections.into_iter().enumerate() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || serve(&conn, &queue))
                .map_err(|e| StoreError::Backend(format!("starting store reader {i}: {e}")))?;
        }
        Ok(ReaderPool { jobs })
    }

    /// Runs `read` on the next free connection.
    pub(super) async fn run<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, done) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The reader may have given up waiting (its request was cancelled).
            let _ = reply.send(read(conn));
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("store readers have stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Backend("store read failed (reader panicked)".into()))?
    }
}

/// One reader thread: takes the next job while the pool lives.
fn serve(conn: &Connection, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panic fails that one read (its reply is dropped); the thread goes on.
        let _ = catch_unwind(AssertUnwindSafe(|| job(conn)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> ReaderPool {
        let conns = (0..n)
            .map(|_| Connection::open_in_memory().unwrap())
            .collect();
        ReaderPool::start(conns).unwrap()
    }

    #[tokio::test]
    async fn runs_reads_and_returns_their_results() {
        let pool = pool(2);
        let n: i64 = pool
            .run(|c| Ok(c.query_row("SELECT 40 + 2", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 42);
        let err = pool
            .run(|c| Ok(c.query_row::<i64, _, _>("SELECT nope", [], |r| r.get(0))?))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn more_reads_than_threads_all_complete() {
        let pool = Arc::new(pool(2));
        let reads = (0..64i64).map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move |c| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(c.query_row("SELECT ?1 * 2", [i], |r| r.get::<_, i64>(0))?)
                })
                .await
            })
        });
        let results = futures::future::join_all(reads).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap().unwrap(), i as i64 * 2);
        }
    }

    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_the_thread_survives() {
        let pool = pool(1);
        let err = pool
            .run(|_| -> Result<(), StoreError> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        let n: i64 = pool
            .run(|c| Ok(c.query_row("SELECT 7", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 7);
    }
}

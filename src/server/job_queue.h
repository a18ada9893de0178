#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/a1111_api.h"

// A bounded queue of generations and the workers that run them. Each job has
// its own cancel flag, which a generation polls between model evaluations, so
// that an interrupt, a time limit or a client that went away frees its worker
// within one step.
namespace tiledraw::server {

struct Job {
  enum class State { Queued, Running, Finished };

  GenerationJobRequest request;
  const Pipeline* pipeline = nullptr;
  std::chrono::steady_clock::time_point queued_at = std::chrono::steady_clock::now();

  std::atomic<bool> cancel{false};
  // Progress: steps done over every iteration, and their total (0 until the
  // first step reports it).
  std::atomic<int64_t> steps_done{0}, steps_total{0};

  // Set by the worker. `results` holds each finished iteration (the last one
  // interrupted leaves none); an error leaves its message and status.
  std::vector<GenerationResult> results;
  std::string error;
  int error_status = 0;
  bool cancelled = false;

  State state() const;
  // Waits until the job is finished or `timeout` has passed; true when finished.
  bool wait_for(std::chrono::milliseconds timeout);
  double running_seconds() const;  // since it started; 0 while queued

 private:
  friend class JobQueue;
  mutable std::mutex mutex_;
  std::condition_variable finished_;
  State state_ = State::Queued;
  std::chrono::steady_clock::time_point started_at_;
};

// What /progress reports.
struct QueueSnapshot {
  std::shared_ptr<Job> oldest_running;  // null when idle
  int64_t running = 0, queued = 0;
};

class JobQueue {
 public:
  // `threads_per_job` OpenMP threads run each generation.
  JobQueue(int workers, size_t capacity, int threads_per_job);
  ~JobQueue();  // cancels every job and joins the workers
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues a job; null when the queue is full.
  std::shared_ptr<Job> submit(GenerationJobRequest request, const Pipeline& pipeline);
  QueueSnapshot snapshot() const;
  // The job of a task id, queued, running or among the last finished ones; null if none.
  std::shared_ptr<Job> find_task(const std::string& task_id) const;
  // Sets the cancel flag of every running job (A1111's interrupt stops the
  // current job, not the queue). Returns how many it reached.
  int interrupt_running();
  // Cancels a job: a queued one leaves the queue at once (finished, with
  // nothing), a running one stops within a step.
  void cancel(const std::shared_ptr<Job>& job);
  // Cancels every job, running or queued (the server is stopping).
  void cancel_all();

 private:
  void work(int threads_per_job);
  static void run(Job& job);

  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  std::deque<std::shared_ptr<Job>> finished_;  // the most recent, for progress polls that come late
  size_t capacity_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tiledraw::server

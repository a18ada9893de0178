#include "server/job_queue.h"

#include <omp.h>

#include <algorithm>

namespace tiledraw::server {

Job::State Job::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

bool Job::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return finished_.wait_for(lock, timeout, [&] { return state_ == State::Finished; });
}

double Job::running_seconds() const {
  std::lock_guard lock(mutex_);
  if (state_ == State::Queued) return 0.0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
}

JobQueue::JobQueue(int workers, size_t capacity, int threads_per_job) : capacity_(capacity) {
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, threads_per_job] { work(threads_per_job); });
}

JobQueue::~JobQueue() {
  cancel_all();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  available_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

std::shared_ptr<Job> JobQueue::submit(GenerationJobRequest request, const Pipeline& pipeline) {
  auto job = std::make_shared<Job>();
  job->request = std::move(request);
  job->pipeline = &pipeline;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= capacity_) return nullptr;
    queue_.push_back(job);
  }
  available_.notify_one();
  return job;
}

QueueSnapshot JobQueue::snapshot() const {
  std::lock_guard lock(mutex_);
  QueueSnapshot s;
  s.running = static_cast<int64_t>(running_.size());
  s.queued = static_cast<int64_t>(queue_.size());
  if (!running_.empty()) s.oldest_running = running_.front();
  return s;
}

std::shared_ptr<Job> JobQueue::find_task(const std::string& task_id) const {
  std::lock_guard lock(mutex_);
  const auto same = [&](const std::shared_ptr<Job>& job) { return job->request.task_id == task_id; };
  if (const auto it = std::find_if(running_.begin(), running_.end(), same); it != running_.end()) return *it;
  if (const auto it = std::find_if(queue_.begin(), queue_.end(), same); it != queue_.end()) return *it;
  if (const auto it = std::find_if(finished_.rbegin(), finished_.rend(), same); it != finished_.rend()) return *it;
  return nullptr;
}

int JobQueue::interrupt_running() {
  std::lock_guard lock(mutex_);
  for (const auto& job : running_) job->cancel = true;
  return static_cast<int>(running_.size());
}

void JobQueue::cancel(const std::shared_ptr<Job>& job) {
  job->cancel = true;
  {
    std::lock_guard lock(mutex_);
    const auto queued = std::find(queue_.begin(), queue_.end(), job);
    if (queued == queue_.end()) return;
    queue_.erase(queued);
  }
  {
    std::lock_guard lock(job->mutex_);
    job->cancelled = true;
    job->state_ = Job::State::Finished;
  }
  job->finished_.notify_all();
}

void JobQueue::cancel_all() {
  std::lock_guard lock(mutex_);
  for (const auto& job : queue_) job->cancel = true;
  for (const auto& job : running_) job->cancel = true;
}

void JobQueue::work(int threads_per_job) {
  // Each worker's generations share the cores with the other workers'.
  omp_set_num_threads(threads_per_job);
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      running_.push_back(job);
    }
    {
      std::lock_guard lock(job->mutex_);
      job->state_ = Job::State::Running;
      job->started_at_ = std::chrono::steady_clock::now();
    }
    run(*job);
    {
      std::lock_guard lock(mutex_);
      running_.erase(std::find(running_.begin(), running_.end(), job));
      constexpr size_t kFinishedKept = 64;
      finished_.push_back(job);
      if (finished_.size() > kFinishedKept) finished_.pop_front();
    }
    {
      std::lock_guard lock(job->mutex_);
      job->state_ = Job::State::Finished;
    }
    job->finished_.notify_all();
  }
}

// The iterations one after another, each batch's seeds following the last
// (A1111's n_iter), until one fails or the job is cancelled.
void JobQueue::run(Job& job) {
  GenerationRequest request = job.request.generation;
  for (int64_t i = 0; i < job.request.iterations && !job.cancel; ++i) {
    const auto report = [&](int done, int total) {
      job.steps_total = total * job.request.iterations;
      job.steps_done = i * total + done;
    };
    try {
      job.results.push_back(job.pipeline->generate(request, report, &job.cancel));
    } catch (const Cancelled&) {
      break;
    } catch (const Error& e) {
      // The library's errors are about what it was asked (a size, the memory limit).
      job.error = e.what(), job.error_status = 422;
      return;
    } catch (const std::exception& e) {
      job.error = std::string("internal error: ") + e.what(), job.error_status = 500;
      return;
    }
    request.seed += static_cast<uint64_t>(request.batch);
  }
  job.cancelled = job.cancel;
}

}  // namespace tiledraw::server

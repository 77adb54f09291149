#include "task.hpp"

#include "tongdao/log.hpp"

namespace tongdao {

Runtime::Runtime(RuntimeOptions options) : impl_(std::make_unique<Impl>(options)) {}

Runtime::Runtime(asio::io_context& context, RuntimeOptions options) : impl_(std::make_unique<Impl>(context, options)) {}

Runtime::~Runtime() {
    auto& rt = *impl_;
    auto counted = [&rt] {
        std::vector<std::shared_ptr<detail::TaskImpl>> live;
        std::lock_guard lock(rt.tasksMutex);
        for (auto* t : rt.tasks) live.push_back(std::static_pointer_cast<detail::TaskImpl>(t->shared_from_this()));
        return live;
    };
    // What is open is aborted without callbacks, on the loop if it runs on its own thread.
    if (rt.thread.joinable()) {
        rt.loop->post([&rt, counted] {
            for (auto& t : counted()) t->abort(false);
            rt.loop->stop();
        });
        rt.thread.join();
    } else {
        for (auto& t : counted()) t->abort(false);
    }
    // Tasks the application still holds must not reach into a loop that is going away.
    std::vector<std::shared_ptr<detail::TaskImpl>> held;
    {
        std::lock_guard lock(rt.tasksMutex);
        for (auto& w : rt.all)
            if (auto t = w.lock()) held.push_back(std::move(t));
    }
    for (auto& t : held) t->detach();
}

void Runtime::run() {
    auto& rt = *impl_;
    if (rt.thread.joinable()) return; // running on its own thread already
    if (rt.work.load() == 0) return;
    rt.runMode = true;
    rt.loop->run();
    rt.runMode = false;
}

void Runtime::start() {
    auto& rt = *impl_;
    if (rt.thread.joinable()) return;
    rt.thread = std::thread([&rt] { rt.loop->run(); });
}

void Runtime::stop() {
    auto& rt = *impl_;
    if (!rt.thread.joinable()) return;
    rt.loop->post([&rt] {
        std::vector<std::shared_ptr<detail::TaskImpl>> live;
        {
            std::lock_guard lock(rt.tasksMutex);
            for (auto* t : rt.tasks)
                live.push_back(std::static_pointer_cast<detail::TaskImpl>(t->shared_from_this()));
        }
        for (auto& t : live) t->abort(true);
        rt.loop->stop();
    });
    rt.thread.join();
}

std::size_t Runtime::activeTasks() const noexcept { return static_cast<std::size_t>(impl_->active.load()); }
const RuntimeOptions& Runtime::options() const noexcept { return impl_->options; }
net::Loop& Runtime::loop() noexcept { return *impl_->loop; }

Runtime& defaultRuntime() {
    static Runtime runtime;
    return runtime;
}

} // namespace tongdao

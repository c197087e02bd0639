//! From a resolved policy to what this process will actually do: which
//! engine serves each class, how many workers the pool gets, and what the
//! user must be told (an engine named explicitly but unavailable).
//! Pure logic: unit-tested without a process to interpose.

use ipc_offload_engine::EngineId;
use ipc_offload_policy::{Class, Engine, Mode, Resolved, Rule, Wait, Workers};

/// What one class does in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassPlan {
    /// The policy's rule for the class.
    pub rule: Rule,
    /// The engine that serves the class; `None`: not intercepted.
    pub engine: Option<EngineId>,
    /// Workers a copy of this class may wake.
    pub helpers: u32,
    /// How a caller waits (after mapping methods the engine lacks).
    pub wait: Wait,
}

/// Something the user should know about the plan (logged once at start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// An explicitly named engine cannot run here; `using` replaces it.
    EngineUnavailable { class: Class, requested: Engine, using: EngineId, reason: &'static str },
    /// A wait method the engine cannot use; `using` replaces it.
    WaitUnavailable { class: Class, requested: Wait, using: Wait },
}

impl core::fmt::Display for Note {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Note::EngineUnavailable { class, requested, using, reason } => {
                write!(f, "[{class}] engine \"{requested}\" is unavailable ({reason}); using {}", using.name())
            }
            Note::WaitUnavailable { class, requested, using } => write!(
                f,
                "[{class}] wait \"{requested}\" applies to DSA completion records; async-cpu waits with \"{using}\""
            ),
        }
    }
}

/// The whole process's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The mode in force.
    pub mode: Mode,
    /// Per class, indexed by [`Class::index`].
    pub classes: [ClassPlan; Class::COUNT],
    /// Worker threads the pool starts (on first use).
    pub workers: u32,
    /// How idle workers wait for the next job.
    pub idle_wait: Wait,
    /// Under `cache = "auto"`, copies this large or larger bypass the cache
    /// (the last-level cache's size; `u64::MAX` when unknown).
    pub cache_limit: u64,
    /// What to tell the user.
    pub notes: Vec<Note>,
}

impl Plan {
    /// The plan of `class`.
    pub fn class(&self, class: Class) -> &ClassPlan {
        &self.classes[class.index()]
    }
}

/// Workers a class may use on `cpus` CPUs. For the IPC classes `auto` leaves
/// two CPUs to the two processes at the ends of a transfer, which copy at
/// the same time already (the writer into the ring, the reader out of it).
fn workers(class: Class, rule: &Rule, cpus: u32) -> u32 {
    match rule.workers {
        _ if class.is_memory_op() => 0,
        Workers::Auto if class.is_ipc() => cpus.saturating_sub(2).min(Workers::AUTO_MAX),
        w => w.count(cpus),
    }
}

/// memset and memcmp: libc on the calling thread (`cpu`, `auto`), or DSA's
/// MEMFILL and COMPARE (`dsa`); the pool does not split them, and hybrid
/// means `dsa` for them.
fn memory_op_engine(class: Class, requested: Engine, machine: Machine, notes: &mut Vec<Note>) -> Option<EngineId> {
    let mut unavailable = |reason| {
        notes.push(Note::EngineUnavailable { class, requested, using: EngineId::Cpu, reason });
        Some(EngineId::Cpu)
    };
    match requested {
        Engine::Off => None,
        Engine::Cpu | Engine::Auto => Some(EngineId::Cpu),
        Engine::AsyncCpu => unavailable("the copy pool does not serve memset or memcmp"),
        Engine::Dsa | Engine::Hybrid if machine.dsa => Some(EngineId::Dsa),
        Engine::Dsa | Engine::Hybrid => unavailable(NO_DSA),
    }
}

/// Why DSA cannot serve a copy in this process.
const NO_DSA: &str = "no usable DSA work queue";

/// What the plan depends on besides the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// CPUs the process may use.
    pub cpus: u32,
    /// Size of the last-level cache, if known.
    pub llc: Option<u64>,
    /// Whether a DSA device (hardware queue or model) is open.
    pub dsa: bool,
}

/// Decides engines for a process on `machine`.
///
/// Under `cache = "auto"`, copies at least as large as the last-level cache
/// are made with non-temporal stores: their destination cannot stay in the
/// cache anyway, and skipping the read-for-ownership spares a third of the
/// memory traffic. (glibc does the same above its own threshold, which a
/// copy cut into parts never reaches.)
///
/// `engine = "auto"` in `efficiency` mode picks the engine that spends the
/// fewest CPU cycles per byte: `dsa` where a device is open, else the
/// calling CPU alone (`cpu`: helpers would copy the same bytes, plus their
/// hand-overs); in the other modes, `async-cpu` where workers exist.
pub fn plan(resolved: &Resolved, machine: Machine) -> Plan {
    let cpus = machine.cpus;
    let mut notes = Vec::new();
    let classes = core::array::from_fn(|i| {
        let class = Class::ALL[i];
        let rule = resolved.rules[i];
        let workers = workers(class, &rule, cpus);
        let best = match resolved.mode {
            Mode::Efficiency if machine.dsa && !class.is_ipc() => EngineId::Dsa,
            Mode::Efficiency => EngineId::Cpu,
            _ if workers > 0 => EngineId::AsyncCpu,
            _ => EngineId::Cpu,
        };
        let engine = if class.is_memory_op() {
            memory_op_engine(class, rule.engine, machine, &mut notes)
        } else {
            match rule.engine {
                Engine::Off => None,
                Engine::Cpu => Some(EngineId::Cpu),
                Engine::Auto => Some(best),
                Engine::AsyncCpu if workers == 0 => {
                    let reason = "it has no worker: `workers` is 0 or one CPU is available";
                    notes.push(Note::EngineUnavailable { class, requested: rule.engine, using: EngineId::Cpu, reason });
                    Some(EngineId::Cpu)
                }
                Engine::AsyncCpu => Some(EngineId::AsyncCpu),
                Engine::Dsa if machine.dsa => Some(EngineId::Dsa),
                Engine::Hybrid if machine.dsa => Some(EngineId::Hybrid),
                Engine::Dsa | Engine::Hybrid => {
                    notes.push(Note::EngineUnavailable { class, requested: rule.engine, using: best, reason: NO_DSA });
                    Some(best)
                }
            }
        };
        let mut wait = rule.wait;
        if engine == Some(EngineId::AsyncCpu) && wait == Wait::Umwait {
            wait = Wait::SpinThenSleep;
            notes.push(Note::WaitUnavailable { class, requested: Wait::Umwait, using: wait });
        }
        let helpers = if engine == Some(EngineId::AsyncCpu) { workers } else { 0 };
        ClassPlan { rule, engine, helpers, wait }
    });
    let pooled = || classes.iter().filter(|c: &&ClassPlan| c.engine == Some(EngineId::AsyncCpu));
    let workers = pooled().map(|c| c.helpers).max().unwrap_or(0);
    let idle_wait = pooled().map(|c| c.wait).min_by_key(|w| eagerness(*w)).unwrap_or(Wait::Sleep);
    let cache_limit = machine.llc.unwrap_or(u64::MAX);
    Plan { mode: resolved.mode, classes, workers, idle_wait, cache_limit, notes }
}

/// Lower is more eager to poll: the pool's idle workers follow the most
/// eager class, so that no class waits for a sleeping worker it did not ask for.
fn eagerness(wait: Wait) -> u8 {
    match wait {
        Wait::Spin => 0,
        Wait::Yield => 1,
        Wait::SpinThenSleep | Wait::Umwait => 2,
        Wait::Sleep => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_offload_policy::{Policy, parse};

    fn machine(cpus: u32) -> Machine {
        Machine { cpus, llc: Some(32 << 20), dsa: false }
    }

    fn plan_of(text: &str, cpus: u32) -> Plan {
        plan(&parse(text, "p").unwrap().resolve(&["prog"]), machine(cpus))
    }

    #[test]
    fn builtin_on_two_cpus_is_async_cpu_with_one_worker() {
        let p = plan(&Policy::builtin().resolve(&["x"]), machine(2));
        let m = p.class(Class::Memcpy);
        assert_eq!(m.engine, Some(EngineId::AsyncCpu));
        assert_eq!(m.helpers, 1);
        assert_eq!(m.rule.min_bytes, 1 << 20);
        assert_eq!(p.workers, 1);
        assert_eq!(p.cache_limit, 32 << 20);
        // Both ends of a socket or pipe copy already: no worker on 2 CPUs.
        assert_eq!(p.class(Class::Unix).engine, Some(EngineId::Cpu));
        assert_eq!(p.class(Class::Unix).rule.ring_bytes, 64 << 20);
        assert_eq!(p.class(Class::Pipe).engine, Some(EngineId::Cpu));
        assert_eq!(p.class(Class::Pipe).rule.ring_bytes, 64 << 20);
        assert!(p.notes.is_empty());
        let p = plan(&Policy::builtin().resolve(&["x"]), machine(8));
        assert_eq!(p.class(Class::Unix).engine, Some(EngineId::AsyncCpu));
        assert_eq!(p.class(Class::Unix).helpers, 6);
    }

    #[test]
    fn auto_on_one_cpu_is_the_cpu_engine_silently() {
        let p = plan(&Policy::builtin().resolve(&["x"]), machine(1));
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Cpu));
        assert_eq!(p.workers, 0);
        assert!(p.notes.is_empty());
    }

    #[test]
    fn explicit_dsa_falls_back_with_one_note() {
        let p = plan_of("[memcpy]\nengine = \"dsa\"\n", 4);
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::AsyncCpu));
        assert_eq!(p.notes.len(), 1);
        assert_eq!(
            p.notes[0].to_string(),
            "[memcpy] engine \"dsa\" is unavailable (no usable DSA work queue); using async-cpu"
        );
        let p = plan_of("[memcpy]\nengine = \"hybrid\"\nworkers = 0\n", 4);
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Cpu));
        assert_eq!(p.notes.len(), 1);
    }

    #[test]
    fn dsa_is_used_when_a_device_is_open() {
        let resolved = parse("[memcpy]\nengine = \"dsa\"\n[unix]\nengine = \"hybrid\"\n", "p").unwrap().resolve(&["x"]);
        let p = plan(&resolved, Machine { dsa: true, ..machine(4) });
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Dsa));
        assert_eq!(p.class(Class::Unix).engine, Some(EngineId::Hybrid));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn explicit_async_cpu_without_workers_falls_back() {
        let p = plan_of("[memcpy]\nengine = \"async-cpu\"\nworkers = 0\n", 8);
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Cpu));
        assert_eq!(p.notes.len(), 1);
    }

    #[test]
    fn off_and_cpu() {
        assert_eq!(plan_of("[memcpy]\nengine = \"off\"\n", 4).class(Class::Memcpy).engine, None);
        let p = plan_of(
            "[memcpy]\nengine = \"cpu\"\n[unix]\nengine = \"off\"\n[pipe]\nengine = \"off\"\n[shm]\nengine = \"off\"\n[tcp]\nengine = \"off\"\n",
            4,
        );
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Cpu));
        assert_eq!(p.class(Class::Unix).engine, None);
        assert_eq!(p.workers, 0, "no class uses the pool");
    }

    #[test]
    fn shm_is_planned_like_memcpy_on_its_own_rule() {
        let p = plan(&Policy::builtin().resolve(&["x"]), machine(2));
        assert_eq!(p.class(Class::Shm), p.class(Class::Memcpy));
        // [memcpy] on the CPU alone: [shm] still uses the pool.
        let p = plan_of("[memcpy]\nengine = \"cpu\"\n", 4);
        assert_eq!(p.class(Class::Shm).engine, Some(EngineId::AsyncCpu));
        assert_eq!(p.workers, 3);
    }

    #[test]
    fn umwait_maps_to_spin_then_sleep_for_async_cpu() {
        let p = plan_of("[memcpy]\nengine = \"async-cpu\"\nwait = \"umwait\"\n", 4);
        assert_eq!(p.class(Class::Memcpy).wait, Wait::SpinThenSleep);
        assert!(matches!(p.notes[0], Note::WaitUnavailable { .. }));
    }

    #[test]
    fn workers_and_idle_wait_follow_the_policy() {
        let p = plan_of("[memcpy]\nworkers = 3\nwait = \"spin\"\n", 2);
        assert_eq!((p.workers, p.idle_wait), (3, Wait::Spin));
        let p = plan_of("[defaults]\nmode = \"efficiency\"\n[memcpy]\nengine = \"async-cpu\"\n", 16);
        assert_eq!((p.workers, p.idle_wait), (15, Wait::Sleep));
    }

    #[test]
    fn efficiency_mode_picks_the_engines_that_spend_the_least_cpu() {
        let p = plan_of("[defaults]\nmode = \"efficiency\"\n", 16);
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Cpu), "no helpers: the same bytes, no hand-overs");
        assert_eq!(p.workers, 0);
        assert_eq!(p.class(Class::Unix).engine, Some(EngineId::Cpu));
        let resolved = parse("[defaults]\nmode = \"efficiency\"\n", "p").unwrap().resolve(&["x"]);
        let p = plan(&resolved, Machine { dsa: true, ..machine(16) });
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::Dsa), "a device is open");
        assert_eq!(p.class(Class::Pipe).engine, Some(EngineId::Cpu), "IPC: the shared-memory path with libc");
        let p = plan_of("[defaults]\nmode = \"throughput\"\n", 16);
        assert_eq!(p.class(Class::Memcpy).engine, Some(EngineId::AsyncCpu));
    }
}

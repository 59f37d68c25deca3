//! Running the loaded programs on a packet with BPF_PROG_TEST_RUN (datapath tests, benchmarks).
use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp};
use l3lb_common::{PROG_TC_EGRESS, PROG_XDP_INGRESS, PROG_XDP_NOOP};

use super::{Datapath, DatapathError};

/// Headroom for the output buffer: the programs never grow a packet, but be generous.
const OUT_SLACK: usize = 256;

/// What a program did with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (an `xdp_action` or a `TC_ACT_*`).
    pub verdict: u32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Mean run time per repetition, as the kernel measured it.
    pub duration: Duration,
}

impl Datapath {
    /// Runs the XDP ingress program on `packet` (starting at the Ethernet header) `repeat` times.
    pub fn test_run_xdp(&self, packet: &[u8], repeat: u32) -> Result<TestRunOutput, DatapathError> {
        let name = PROG_XDP_INGRESS;
        let program: &Xdp = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram { name })?
            .try_into()
            .map_err(|source| DatapathError::ProgramType { name, source })?;
        run(name, packet, repeat, |opts| program.test_run(opts))
    }

    /// Runs the do-nothing XDP program (loading it on first use): the benchmarks' floor.
    pub fn test_run_xdp_noop(
        &mut self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput, DatapathError> {
        let name = PROG_XDP_NOOP;
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram { name })?
            .try_into()
            .map_err(|source| DatapathError::ProgramType { name, source })?;
        if program.fd().is_err() {
            program
                .load()
                .map_err(|source| DatapathError::ProgramLoad { name, source })?;
        }
        run(name, packet, repeat, |opts| program.test_run(opts))
    }

    /// Runs the TC egress program on `packet` (starting at the Ethernet header) `repeat` times.
    pub fn test_run_tc_egress(
        &self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput, DatapathError> {
        let name = PROG_TC_EGRESS;
        let program: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram { name })?
            .try_into()
            .map_err(|source| DatapathError::ProgramType { name, source })?;
        run(name, packet, repeat, |opts| program.test_run(opts))
    }
}

fn run(
    name: &'static str,
    packet: &[u8],
    repeat: u32,
    test_run: impl FnOnce(
        TestRunOptions<'_>,
    ) -> Result<aya::programs::TestRunResult, aya::programs::ProgramError>,
) -> Result<TestRunOutput, DatapathError> {
    let mut out = vec![0u8; packet.len() + OUT_SLACK];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        repeat: repeat.max(1),
        ..TestRunOptions::default()
    };
    let result = test_run(opts).map_err(|source| DatapathError::TestRun { name, source })?;
    out.truncate(result.data_size_out as usize);
    Ok(TestRunOutput {
        verdict: result.return_value,
        packet: out,
        duration: result.duration,
    })
}

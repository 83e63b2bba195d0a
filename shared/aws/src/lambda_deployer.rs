//! The Deployer port over Lambda: a canary is a published version that the alias
//! [`LIVE_ALIAS`] sends a weight of its traffic to, beside the version it points at.
//!
//! # Deploying a canary
//!
//! 1. `GetAlias live`: its `FunctionVersion` is the stable version. A function without the
//!    alias, or whose alias points at `$LATEST`, is refused (see below).
//! 2. `UpdateFunctionConfiguration` of `$LATEST` (memory, timeout, environment, and a
//!    description naming the improvement), then `GetFunctionConfiguration` until its
//!    `LastUpdateStatus` is `Successful`. For a code patch, first `GetFunction` on the stable
//!    version (its `CodeSha256` must be the one the patch was validated against), its
//!    package fetched and patched ([`crate::lambda_code::rewrite`]), and after the settings
//!    `UpdateFunctionCode` with the new zip and the `RevisionId` just read, waited for the
//!    same way.
//! 3. `PublishVersion` with that description and `CodeSha256`: the patched package's, or
//!    for a configuration change the stable version's, so no other code is ever published.
//! 4. `PutFunctionConcurrency` / `DeleteFunctionConcurrency` if the reservation changes.
//!    Reserved concurrency belongs to the function, not to a version: from this step on it
//!    applies to the stable version's traffic too, and only a rollback restores it.
//! 5. `UpdateAlias live`: `FunctionVersion` stays the stable version and `RoutingConfig`
//!    sends `weight` to the new one. This is the one step that moves traffic, and the last,
//!    so a deploy that fails part-way leaves the traffic where it was.
//!
//! Lambda calls that meet another update in progress (`ResourceConflictException`) are
//! tried again with backoff, and an update is waited for, each for at most a minute; after
//! that the call fails as [`DeployError::Unavailable`] and a retry picks up where it stopped.
//!
//! # Retries and where the baseline lives
//!
//! A retry with the same improvement id ends in the same state and returns the same
//! [`CanaryDeployment`]. Most of the baseline is read again rather than stored: a published
//! version's configuration never changes, so the baseline's memory, timeout and environment
//! are those of its stable version. Three facts cannot be read back, and are written where a
//! retry finds them, as compact JSON in descriptions (at most 256 characters each):
//!
//! - the canary version's description, written once by `PublishVersion` (step 3) and
//!   found again with `ListVersionsByFunction`: the improvement id, the stable version it was
//!   cut against, the reserved concurrency before and after, and for a code patch the new
//!   package's `CodeSha256` (a retry patches the stable package again, which gives the same
//!   bytes, and refuses another patch). The reservation is function-wide and changed in
//!   step 4, so after a first attempt the old value is gone.
//! - the alias's description, written in the same `UpdateAlias` call that routes traffic
//!   (step 5): the improvement, the canary version, the weight and the time routing began.
//!   Aliases carry no timestamp, and after a promotion the alias no longer names the stable
//!   version. Promote and rollback leave this description alone.
//!
//! Once the alias description names an improvement, a deploy of that improvement changes
//! nothing any more: it rebuilds and returns the deployment, also after a promotion or a
//! rollback. `$LATEST` keeps the canary's description until a rollback gives it the stable
//! version's; the description also makes every canary a new version, even when only the
//! (function-wide) reservation changes, which Lambda would otherwise not publish.
//!
//! # A deploy that fails for good
//!
//! Its error says what it left (`…; left: version 2 of f is published for improvement i, not
//! routed: …`). [`Deployer::undo_deploy`] then finds what that improvement's deploy changed,
//! from the same notes: the alias naming it (routed: a full rollback), a version published
//! for it (the reservation and `$LATEST` restored; refused when later versions exist), or
//! `$LATEST` still carrying its note (only `$LATEST` restored); none of these, nothing to do.
//! A restore goes traffic first, then the reservation, then `$LATEST` (after a code patch its
//! code first: the stable version's package uploaded again, then its settings and
//! description, so the note stays until the code is back), and each failure says which of
//! them are restored.
//!
//! # A function without the alias
//!
//! [`Deployer::function_state`] and [`Deployer::deploy_canary`] refuse it with
//! [`DeployError::Rejected`] naming the alias, rather than creating one. Callers that invoke
//! the function unqualified run `$LATEST`, and step 2 changes `$LATEST`: creating the alias
//! here would ship the change to all of that traffic at once, with the canary routing only an
//! alias nobody calls. The alias comes from the function's template (SAM's
//! `AutoPublishAlias: live`), together with the callers that use it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::operation::delete_function_concurrency::DeleteFunctionConcurrencyError;
use aws_sdk_lambda::operation::get_alias::{GetAliasError, GetAliasOutput};
use aws_sdk_lambda::operation::get_function::GetFunctionError;
use aws_sdk_lambda::operation::get_function_concurrency::GetFunctionConcurrencyError;
use aws_sdk_lambda::operation::get_function_configuration::{
    GetFunctionConfigurationError, GetFunctionConfigurationOutput,
};
use aws_sdk_lambda::operation::list_versions_by_function::ListVersionsByFunctionError;
use aws_sdk_lambda::operation::publish_version::{PublishVersionError, PublishVersionOutput};
use aws_sdk_lambda::operation::put_function_concurrency::PutFunctionConcurrencyError;
use aws_sdk_lambda::operation::update_alias::UpdateAliasError;
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    AliasRoutingConfiguration, Environment, EnvironmentResponse, FunctionConfiguration,
    LastUpdateStatus, PackageType,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::change::{CodeRelease, DeploySpec, LambdaSettings};
use selfbuild_core::clock::SystemClock;
use selfbuild_core::deployment::{CanaryDeployment, CodeVersion, FunctionState, LIVE_ALIAS};
use selfbuild_core::ids::{ComponentId, ImprovementId};
use selfbuild_core::ports::{Clock, CodeSourceError, DeployError, Deployer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::lambda_code::PackageFetcher;
use crate::lambda_code::rewrite::{self, PatchedPackage};
use crate::sdk_error::{ErrorChain, is_transient};

/// The version name Lambda gives the unpublished, editable configuration.
const LATEST: &str = "$LATEST";
/// The longest description Lambda keeps on a function, version or alias.
const MAX_DESCRIPTION: usize = 256;
/// How far a weight read back may differ from the one asked for and still be the same.
const WEIGHT_TOLERANCE: f64 = 1e-9;

/// How long the deployer waits for Lambda to finish an update or to release a conflict.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// The first pause; each next one doubles, up to `max_delay`.
    first_delay: Duration,
    /// The longest pause.
    max_delay: Duration,
    /// How long one wait may take in all before the call gives up.
    budget: Duration,
}

impl Pacing {
    /// Updates of a function's configuration take seconds; a minute covers slow ones.
    const DEFAULT: Self = Self {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        budget: Duration::from_secs(60),
    };
}

/// Ships Lambda configuration changes and code patches as canaries behind the alias
/// [`LIVE_ALIAS`].
#[derive(Clone)]
pub struct LambdaDeployer {
    client: Client,
    pacing: Pacing,
    /// Stamps `deployed_at`; the process's one clock.
    clock: Arc<dyn Clock>,
    /// Fetches the packages a code patch is applied to and a rollback restores.
    packages: PackageFetcher,
}

impl std::fmt::Debug for LambdaDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaDeployer")
            .field("pacing", &self.pacing)
            .finish_non_exhaustive()
    }
}

impl LambdaDeployer {
    /// A deployer with a Lambda client built from `config`, fetching deployment packages
    /// from the host each presigned `Code.Location` names.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    /// A deployer using an existing Lambda client.
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            pacing: Pacing::DEFAULT,
            clock: Arc::new(SystemClock),
            packages: PackageFetcher::new(),
        }
    }

    /// The same deployer, stamping deployments with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same deployer, fetching deployment packages with `packages` instead of from the
    /// host each presigned `Code.Location` names (e.g. one with a base URL).
    #[must_use]
    pub fn with_packages(mut self, packages: PackageFetcher) -> Self {
        self.packages = packages;
        self
    }
}

#[async_trait]
impl Deployer for LambdaDeployer {
    /// The stable version's memory, timeout and environment, the function's reserved
    /// concurrency (function-wide: during a canary it is the canary's), and the routing.
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError> {
        let alias = self.alias(function).await?;
        let stable = stable_version(function, &alias)?;
        let (config, reserved) = tokio::join!(
            self.configuration(function, Some(&stable)),
            self.reserved_concurrency(function)
        );
        let config = config?;
        Ok(FunctionState {
            function: function.clone(),
            settings: config.settings(reserved?),
            alias: LIVE_ALIAS.to_owned(),
            stable_version: stable,
            canary: canary_of(&alias),
            code_sha256: config.code_sha256,
        })
    }

    async fn deploy_canary(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
        spec: &DeploySpec,
        weight: f64,
    ) -> Result<CanaryDeployment, DeployError> {
        let settings = spec.settings();
        let release = spec.release();
        if !(weight > 0.0 && weight <= 1.0) {
            return Err(DeployError::Rejected(format!(
                "canary weight must be in (0, 1], got {weight}"
            )));
        }
        let alias = self.alias(function).await?;
        if let Some(note) =
            AliasNote::parse(alias.description()).filter(|n| n.improvement_id == *improvement_id)
        {
            return self
                .deployed(improvement_id, function, spec, weight, note)
                .await;
        }
        let stable = stable_version(function, &alias)?;
        if stable == LATEST {
            return Err(DeployError::Rejected(format!(
                "{function}'s alias `{LIVE_ALIAS}` points at {LATEST}, which a deploy changes; \
                 point it at a published version first"
            )));
        }
        if let Some((version, _)) = canary_of(&alias) {
            return Err(DeployError::Rejected(format!(
                "{function} already routes to canary version {version}; \
                 promote or roll it back first"
            )));
        }
        let (canary, note, code) = match self.published(function, improvement_id).await? {
            Some((canary, note)) => {
                if note.stable != stable {
                    return Err(DeployError::Rejected(format!(
                        "version {} of {function} was cut for improvement {improvement_id} \
                         against version {}, but the alias now points at {stable}",
                        canary.version, note.stable
                    )));
                }
                if !canary.runs(settings) || note.reserved != settings.reserved_concurrency {
                    return Err(other_settings(improvement_id, function));
                }
                let code = self
                    .same_code(improvement_id, function, &note, &canary, release)
                    .await?;
                debug!(
                    function = %function,
                    version = %canary.version,
                    "canary version already published"
                );
                (canary, note, code)
            }
            None => {
                // A patch is checked against the live code and applied before anything changes.
                let (base, patched) = match release {
                    Some(release) => {
                        let (base, patched) = self.patched(function, &stable, release).await?;
                        (base, Some(patched))
                    }
                    None => (self.configuration(function, Some(&stable)).await?, None),
                };
                let note = VersionNote {
                    improvement_id: improvement_id.clone(),
                    stable: stable.clone(),
                    reserved_before: self.reserved_concurrency(function).await?,
                    reserved: settings.reserved_concurrency,
                    code: patched.as_ref().map(|p| p.code_sha256.clone()),
                };
                let canary = self
                    .publish_canary(function, settings, &note, &base, patched.as_ref())
                    .await
                    .map_err(|e| {
                        e.leaving(&format!(
                            "{LATEST} of {function} may carry the canary's {} (it serves no \
                             alias traffic); nothing is published or routed; alias \
                             `{LIVE_ALIAS}` sends all traffic to version {stable}",
                            carried(release.is_some())
                        ))
                    })?;
                let code = release.zip(patched).map(|(release, patched)| CodeVersion {
                    base_code_sha256: base.code_sha256.clone().unwrap_or_default(),
                    code_sha256: patched.code_sha256,
                    files: patched_paths(release),
                });
                (canary, note, code)
            }
        };
        // From here on a version is published: a failure says what is left, which a retry of
        // the deploy reuses and `undo_deploy` restores.
        let published = |reservation: &str| {
            format!(
                "version {} of {function} is published for improvement {improvement_id}, not \
                 routed: alias `{LIVE_ALIAS}` sends all traffic to version {stable}; \
                 {reservation}; {LATEST} carries the canary's {}",
                canary.version,
                carried(code.is_some())
            )
        };
        let before = reservation(note.reserved_before);
        let after = reservation(settings.reserved_concurrency);
        let baseline = self
            .baseline(function, &note)
            .await
            .map_err(|e| e.leaving(&published(&format!("reserved concurrency {before}"))))?;
        self.reserve(function, settings.reserved_concurrency)
            .await
            .map_err(|e| {
                e.leaving(&published(&format!(
                    "reserved concurrency {before}, or already {after}"
                )))
            })?;
        let deployed_at = to_the_millisecond(self.clock.now());
        let alias_note = AliasNote {
            improvement_id: improvement_id.clone(),
            canary: canary.version.clone(),
            weight,
            since: deployed_at,
        };
        self.route(
            function,
            &alias,
            &stable,
            Some((&canary.version, weight)),
            Some(&alias_note.to_description()?),
        )
        .await
        .map_err(|e| {
            e.leaving(&format!(
                "version {} of {function} is published for improvement {improvement_id} and \
                 reserved concurrency is {after} (was {before}, function-wide); alias \
                 `{LIVE_ALIAS}` sends all traffic to version {stable} unless the update routing \
                 {weight} to version {} took effect",
                canary.version, canary.version
            ))
        })?;
        info!(
            function = %function,
            improvement = %improvement_id,
            stable = %stable,
            canary = %canary.version,
            code = code.is_some(),
            weight,
            "canary routed"
        );
        Ok(CanaryDeployment {
            improvement_id: improvement_id.clone(),
            baseline,
            settings: settings.clone(),
            code,
            canary_version: canary.version,
            weight,
            deployed_at,
        })
    }

    async fn promote(&self, deployment: &CanaryDeployment) -> Result<(), DeployError> {
        let function = &deployment.baseline.function;
        let version = &deployment.canary_version;
        let alias = self.alias(function).await?;
        let routed = canary_of(&alias);
        if alias.function_version() == Some(version.as_str()) && routed.is_none() {
            debug!(function = %function, version = %version, "already promoted");
            return Ok(());
        }
        if routed.as_ref().map(|(v, _)| v) != Some(version) {
            return Err(DeployError::Rejected(format!(
                "{function}'s alias no longer routes to version {version}: rolled back or replaced"
            )));
        }
        self.route(function, &alias, version, None, None).await?;
        info!(function = %function, version = %version, "canary promoted");
        Ok(())
    }

    async fn rollback(&self, deployment: &CanaryDeployment) -> Result<(), DeployError> {
        self.restore(
            &deployment.improvement_id,
            &deployment.baseline,
            &deployment.canary_version,
            deployment.code.is_some(),
        )
        .await
    }

    async fn undo_deploy(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError> {
        let alias = self.alias(function).await?;
        // Routed: the last call took effect (its answer lost), or a later step failed.
        if let Some(note) =
            AliasNote::parse(alias.description()).filter(|n| n.improvement_id == *improvement_id)
        {
            let canary = self.configuration(function, Some(&note.canary)).await?;
            let version_note = VersionNote::parse(&canary.description)
                .filter(|n| n.improvement_id == *improvement_id)
                .ok_or_else(|| not_published_for(function, &note.canary, improvement_id))?;
            let baseline = self.baseline(function, &version_note).await?;
            let ships_code = version_note.code.is_some();
            self.restore(improvement_id, &baseline, &note.canary, ships_code)
                .await?;
            return Ok(Some(baseline));
        }
        // Published, perhaps with the reservation changed, not routed.
        if let Some((canary, note, newest)) = self.find_published(function, improvement_id).await? {
            if !newest {
                return Err(DeployError::Rejected(format!(
                    "version {} of {function} was published for improvement {improvement_id}, \
                     but later versions were published after it; undo those first",
                    canary.version
                )));
            }
            let baseline = self.baseline(function, &note).await?;
            self.restore(
                improvement_id,
                &baseline,
                &canary.version,
                note.code.is_some(),
            )
            .await?;
            return Ok(Some(baseline));
        }
        // Only `$LATEST` changed: it still carries the note it was given.
        let latest = self.configuration(function, None).await?;
        let Some(note) =
            VersionNote::parse(&latest.description).filter(|n| n.improvement_id == *improvement_id)
        else {
            debug!(function = %function, improvement = %improvement_id, "nothing to undo");
            return Ok(None);
        };
        let stable = self.configuration(function, Some(&note.stable)).await?;
        self.restore_latest(function, &note.stable, &stable, note.code.is_some(), "")
            .await?;
        info!(
            function = %function,
            improvement = %improvement_id,
            stable = %note.stable,
            "unpublished change undone"
        );
        Ok(Some(FunctionState {
            function: function.clone(),
            settings: stable.settings(self.reserved_concurrency(function).await?),
            alias: LIVE_ALIAS.to_owned(),
            stable_version: note.stable,
            canary: None,
            code_sha256: stable.code_sha256,
        }))
    }
}

impl LambdaDeployer {
    /// Restores `baseline` exactly after the canary `canary_version` of `improvement_id`:
    /// traffic first, then the function-wide reservation, then `$LATEST` (its code too when
    /// the canary `ships_code`). Refused when a later deploy routes traffic.
    async fn restore(
        &self,
        improvement_id: &ImprovementId,
        baseline: &FunctionState,
        canary_version: &str,
        ships_code: bool,
    ) -> Result<(), DeployError> {
        let function = &baseline.function;
        let canary_version = version_number(canary_version).ok_or_else(|| {
            DeployError::Rejected(format!("{function} has no version {canary_version}"))
        })?;
        let alias = self.alias(function).await?;
        let routed = canary_of(&alias);
        let newest = alias
            .function_version()
            .into_iter()
            .chain(routed.as_ref().map(|(v, _)| v.as_str()))
            .filter_map(version_number)
            .max();
        if newest.is_some_and(|n| n > canary_version) {
            return Err(DeployError::Rejected(format!(
                "{function} was deployed again after version {canary_version}; roll that back first"
            )));
        }
        let stable = self
            .configuration(function, Some(&baseline.stable_version))
            .await?;
        if !stable.runs(&baseline.settings) {
            return Err(DeployError::Rejected(format!(
                "the baseline of {function} names version {} with settings it does not have",
                baseline.stable_version
            )));
        }
        // Traffic first, then the function-wide reservation, then `$LATEST`, which serves none.
        if alias.function_version() != Some(baseline.stable_version.as_str())
            || routed != baseline.canary
        {
            let canary = baseline.canary.as_ref().map(|(v, w)| (v.as_str(), *w));
            self.route(function, &alias, &baseline.stable_version, canary, None)
                .await?;
        }
        let stable_version = &baseline.stable_version;
        self.reserve(function, baseline.settings.reserved_concurrency)
            .await
            .map_err(|e| {
                e.leaving(&format!(
                    "alias `{LIVE_ALIAS}` sends all traffic to version {stable_version} again; \
                     the function-wide reserved concurrency may still be the canary's"
                ))
            })?;
        let restored = format!(
            "alias `{LIVE_ALIAS}` sends all traffic to version {stable_version} again and the \
             reserved concurrency is restored; "
        );
        self.restore_latest(function, stable_version, &stable, ships_code, &restored)
            .await?;
        info!(
            function = %function,
            improvement = %improvement_id,
            stable = %baseline.stable_version,
            "baseline restored"
        );
        Ok(())
    }
}

impl LambdaDeployer {
    /// The deployment of an improvement whose routing was set once: rebuilt, nothing changed.
    async fn deployed(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
        spec: &DeploySpec,
        weight: f64,
        note: AliasNote,
    ) -> Result<CanaryDeployment, DeployError> {
        let settings = spec.settings();
        let canary = self.configuration(function, Some(&note.canary)).await?;
        let version_note = VersionNote::parse(&canary.description)
            .filter(|n| n.improvement_id == *improvement_id)
            .ok_or_else(|| not_published_for(function, &note.canary, improvement_id))?;
        if !canary.runs(settings)
            || version_note.reserved != settings.reserved_concurrency
            || (note.weight - weight).abs() > WEIGHT_TOLERANCE
        {
            return Err(other_settings(improvement_id, function));
        }
        let code = self
            .same_code(
                improvement_id,
                function,
                &version_note,
                &canary,
                spec.release(),
            )
            .await?;
        debug!(
            function = %function,
            improvement = %improvement_id,
            version = %note.canary,
            "canary already routed"
        );
        Ok(CanaryDeployment {
            improvement_id: improvement_id.clone(),
            baseline: self.baseline(function, &version_note).await?,
            settings: settings.clone(),
            code,
            canary_version: note.canary,
            weight,
            deployed_at: note.since,
        })
    }

    /// The code of a version published before for `improvement_id`, checked to be what
    /// `release` gives (none for a configuration change): the same patch on the same base
    /// gives the same package, so the same `CodeSha256`. Another patch, or a patch where a
    /// configuration change was published (or the reverse), is refused.
    async fn same_code(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
        note: &VersionNote,
        canary: &VersionConfig,
        release: Option<&CodeRelease>,
    ) -> Result<Option<CodeVersion>, DeployError> {
        let (release, published) = match (release, &note.code) {
            (None, None) => return Ok(None),
            (Some(release), Some(published)) => (release, published),
            _ => return Err(other_settings(improvement_id, function)),
        };
        if canary.code_sha256.as_ref() != Some(published) {
            return Err(DeployError::Rejected(format!(
                "version {} of {function} was published for improvement {improvement_id} with \
                 code {published}, but carries {}",
                canary.version,
                canary.code_sha256.as_deref().unwrap_or("no CodeSha256")
            )));
        }
        let (base, patched) = self.patched(function, &note.stable, release).await?;
        if patched.code_sha256 != *published {
            return Err(other_settings(improvement_id, function));
        }
        Ok(Some(CodeVersion {
            base_code_sha256: base.code_sha256.unwrap_or_default(),
            code_sha256: patched.code_sha256,
            files: patched_paths(release),
        }))
    }

    /// `release` applied to the package of `version`, which must be the code the patch was
    /// validated against; that version's configuration and the patched package.
    async fn patched(
        &self,
        function: &ComponentId,
        version: &str,
        release: &CodeRelease,
    ) -> Result<(VersionConfig, PatchedPackage), DeployError> {
        let (base, location) = self.code_of(function, version).await?;
        let Some(validated) = release.base.code_sha256.as_deref() else {
            return Err(DeployError::Rejected(format!(
                "the patch for {function} names no CodeSha256 it was validated against; \
                 validate it again"
            )));
        };
        if base.code_sha256.as_deref() != Some(validated) {
            return Err(DeployError::Rejected(format!(
                "the live code of {function} changed since validation (version {version} has \
                 CodeSha256 {}, the patch was validated against {validated}); validate again",
                base.code_sha256.as_deref().unwrap_or("none")
            )));
        }
        let package = self.download(function, &base, &location).await?;
        let patched = rewrite::patch_package(&package, &release.files).map_err(|e| {
            DeployError::Rejected(format!(
                "the patch does not apply to version {version} of {function}: {e}"
            ))
        })?;
        debug!(
            function = %function,
            base = %validated,
            code = %patched.code_sha256,
            "patched package built"
        );
        Ok((base, patched))
    }

    /// The configuration of `version` and the presigned URL of its package (`GetFunction`).
    /// Container images are refused: selfbuild patches zip packages only.
    async fn code_of(
        &self,
        function: &ComponentId,
        version: &str,
    ) -> Result<(VersionConfig, String), DeployError> {
        let got = self
            .client
            .get_function()
            .function_name(function.as_str())
            .qualifier(version)
            .send()
            .await
            .map_err(|e| failure(function, "GetFunction", &e))?;
        let configuration = got
            .configuration()
            .ok_or_else(|| malformed(function, "GetFunction", "no Configuration"))?;
        if configuration.package_type() == Some(&PackageType::Image) {
            return Err(DeployError::Rejected(format!(
                "version {version} of {function} is a container image; selfbuild ships code \
                 patches to zip packages only"
            )));
        }
        let config = VersionConfig::try_from(configuration)
            .map_err(|e| malformed(function, "GetFunction", &e))?;
        let location = got
            .code()
            .and_then(|c| c.location())
            .ok_or_else(|| malformed(function, "GetFunction", "no Code.Location"))?;
        Ok((config, location.to_owned()))
    }

    /// The package at `location`, checked to be the one `config`'s `CodeSha256` names.
    async fn download(
        &self,
        function: &ComponentId,
        config: &VersionConfig,
        location: &str,
    ) -> Result<Vec<u8>, DeployError> {
        let package = self
            .packages
            .fetch(function, location)
            .await
            .map_err(|e| match e {
                CodeSourceError::Unavailable(m) => DeployError::Unavailable(m),
                CodeSourceError::Rejected(m) => DeployError::Rejected(m),
            })?;
        let fetched = rewrite::code_sha256(&package);
        if config.code_sha256.as_deref() != Some(fetched.as_str()) {
            return Err(DeployError::Rejected(format!(
                "the package fetched for version {} of {function} has CodeSha256 {fetched}, \
                 not the version's {}",
                config.version,
                config.code_sha256.as_deref().unwrap_or("none")
            )));
        }
        Ok(package)
    }

    /// What the function was when the canary described by `note` was cut.
    async fn baseline(
        &self,
        function: &ComponentId,
        note: &VersionNote,
    ) -> Result<FunctionState, DeployError> {
        let stable = self.configuration(function, Some(&note.stable)).await?;
        Ok(FunctionState {
            function: function.clone(),
            settings: stable.settings(note.reserved_before),
            alias: LIVE_ALIAS.to_owned(),
            stable_version: note.stable.clone(),
            canary: None,
            code_sha256: stable.code_sha256,
        })
    }

    /// Sets `$LATEST` to `settings` (and to the `patched` package, if any) and publishes it
    /// as a version described by `note`. The version is published only with the code it
    /// should carry: the patched package, or else the code of `base` (the stable version), so
    /// code left on `$LATEST` by someone else is never published as a configuration change.
    async fn publish_canary(
        &self,
        function: &ComponentId,
        settings: &LambdaSettings,
        note: &VersionNote,
        base: &VersionConfig,
        patched: Option<&PatchedPackage>,
    ) -> Result<VersionConfig, DeployError> {
        let description = note.to_description()?;
        let target = VersionConfig {
            code_sha256: None,
            revision_id: None,
            version: LATEST.to_owned(),
            memory_mb: settings.memory_mb,
            timeout_seconds: settings.timeout_seconds,
            environment: settings.environment.clone(),
            description: description.clone(),
        };
        // Settings (with the note) first: `$LATEST` carries new code only while it carries
        // the note too, which is how `undo_deploy` finds it.
        let latest = self.update_latest(function, &target).await?;
        let mut latest = VersionConfig::try_from(&latest)
            .map_err(|e| malformed(function, "GetFunctionConfiguration", &e))?;
        if let Some(patched) = patched {
            latest = self
                .update_latest_code(function, &patched.zip, latest.revision_id.as_deref())
                .await?;
        }
        let expected = patched.map_or(base.code_sha256.as_deref(), |p| {
            Some(p.code_sha256.as_str())
        });
        if let Some(expected) = expected
            && latest.code_sha256.as_deref() != Some(expected)
        {
            let message = format!(
                "{LATEST} of {function} carries code {}, not the {expected} this deploy \
                 publishes",
                latest
                    .code_sha256
                    .as_deref()
                    .unwrap_or("without a CodeSha256")
            );
            // A configuration change does not touch the code: what is there was left by
            // another deploy or by hand, and stays until a rollback or a deploy replaces it.
            return Err(if patched.is_some() {
                DeployError::Unavailable(format!("{message}: it changed meanwhile"))
            } else {
                DeployError::Rejected(format!(
                    "{message} (the stable version {}'s): undo the change that left it there \
                     or deploy it as a version first",
                    base.version
                ))
            });
        }
        let published = self
            .patiently(|| {
                self.client
                    .publish_version()
                    .function_name(function.as_str())
                    .description(&description)
                    .set_code_sha256(expected.map(str::to_owned))
                    .send()
            })
            .await
            .map_err(|e| failure(function, "PublishVersion", &e))?;
        let published = VersionConfig::try_from(&published)
            .map_err(|e| malformed(function, "PublishVersion", &e))?;
        if published.description != description
            || !published.runs(settings)
            || expected.is_some_and(|code| published.code_sha256.as_deref() != Some(code))
        {
            return Err(DeployError::Rejected(format!(
                "PublishVersion on {function} returned version {}, not the configuration and \
                 code just set: {LATEST} changed meanwhile",
                published.version
            )));
        }
        info!(function = %function, version = %published.version, "canary version published");
        Ok(published)
    }

    /// Puts the package of the stable version back on `$LATEST` if the canary shipped code
    /// and `$LATEST` does not carry that package, then its settings and description. A
    /// failure says what is left, after `restored` (what the caller restored before).
    async fn restore_latest(
        &self,
        function: &ComponentId,
        stable_version: &str,
        stable: &VersionConfig,
        ships_code: bool,
        restored: &str,
    ) -> Result<(), DeployError> {
        let left = |what: &str| {
            format!(
                "{restored}{LATEST} still carries the canary's {what} (it serves no alias traffic)"
            )
        };
        let mut latest = self.configuration(function, None).await?;
        // Code first: `$LATEST` keeps the note until its code is back, so a retry finds it.
        if ships_code && latest.code_sha256 != stable.code_sha256 {
            let restore_code = async {
                let (config, location) = self.code_of(function, stable_version).await?;
                let package = self.download(function, &config, &location).await?;
                self.update_latest_code(function, &package, latest.revision_id.as_deref())
                    .await
            };
            latest = restore_code
                .await
                .map_err(|e| e.leaving(&left(carried(true))))?;
            info!(function = %function, stable = %stable_version, "stable code restored on $LATEST");
        }
        if !latest.same_as(stable) {
            self.update_latest(function, stable)
                .await
                .map_err(|e| e.leaving(&left(carried(false))))?;
        }
        Ok(())
    }

    /// Uploads `zip` as `$LATEST`'s code, conditional on `$LATEST` still being at `revision`
    /// (so a concurrent change is detected rather than overwritten), and waits until Lambda
    /// has applied it; `$LATEST` as it is then.
    async fn update_latest_code(
        &self,
        function: &ComponentId,
        zip: &[u8],
        revision: Option<&str>,
    ) -> Result<VersionConfig, DeployError> {
        self.patiently(|| {
            self.client
                .update_function_code()
                .function_name(function.as_str())
                .zip_file(Blob::new(zip.to_vec()))
                .set_revision_id(revision.map(str::to_owned))
                .send()
        })
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(UpdateFunctionCodeError::is_precondition_failed_exception)
            {
                DeployError::Unavailable(format!(
                    "UpdateFunctionCode on {function}: {LATEST} changed since it was read (at \
                     revision {}), so another deploy or a hand edit may be under way; its code \
                     was not overwritten: {}",
                    revision.unwrap_or("unknown"),
                    ErrorChain(&e)
                ))
            } else {
                failure(function, "UpdateFunctionCode", &e)
            }
        })?;
        let updated = self.wait_until_updated(function).await?;
        VersionConfig::try_from(&updated)
            .map_err(|e| malformed(function, "GetFunctionConfiguration", &e))
    }

    /// The alias [`LIVE_ALIAS`]; a missing alias (or function) is refused, naming both.
    async fn alias(&self, function: &ComponentId) -> Result<GetAliasOutput, DeployError> {
        let got = self
            .client
            .get_alias()
            .function_name(function.as_str())
            .name(LIVE_ALIAS)
            .send()
            .await;
        match got {
            Ok(alias) => Ok(alias),
            Err(e)
                if e.as_service_error()
                    .is_some_and(GetAliasError::is_resource_not_found_exception) =>
            {
                Err(DeployError::Rejected(format!(
                    "{function} has no alias `{LIVE_ALIAS}`, or does not exist: canaries route \
                     through the alias, so publish a version and point `{LIVE_ALIAS}` at it \
                     first (SAM: AutoPublishAlias: {LIVE_ALIAS}); {}",
                    ErrorChain(&e)
                )))
            }
            Err(e) => Err(failure(function, "GetAlias", &e)),
        }
    }

    /// The configuration of one version; `None` is `$LATEST`.
    async fn configuration(
        &self,
        function: &ComponentId,
        version: Option<&str>,
    ) -> Result<VersionConfig, DeployError> {
        let config = self
            .client
            .get_function_configuration()
            .function_name(function.as_str())
            .set_qualifier(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| failure(function, "GetFunctionConfiguration", &e))?;
        VersionConfig::try_from(&config)
            .map_err(|e| malformed(function, "GetFunctionConfiguration", &e))
    }

    /// The version published for `improvement_id`, if any, and what it recorded. Refused
    /// when a later version was published after it: routing to an older canary then could
    /// revive one that was shipped and rolled back before.
    async fn published(
        &self,
        function: &ComponentId,
        improvement_id: &ImprovementId,
    ) -> Result<Option<(VersionConfig, VersionNote)>, DeployError> {
        match self.find_published(function, improvement_id).await? {
            Some((config, _, false)) => Err(DeployError::Rejected(format!(
                "version {} of {function} was published for improvement {improvement_id}, but \
                 later versions were published after it; not routing an older canary",
                config.version
            ))),
            found => Ok(found.map(|(config, note, _)| (config, note))),
        }
    }

    /// The version published for `improvement_id`, what it recorded, and whether it is the
    /// newest version.
    async fn find_published(
        &self,
        function: &ComponentId,
        improvement_id: &ImprovementId,
    ) -> Result<Option<(VersionConfig, VersionNote, bool)>, DeployError> {
        let versions = self
            .client
            .list_versions_by_function()
            .function_name(function.as_str())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| failure(function, "ListVersionsByFunction", &e))?;
        // `$LATEST` carries the same description from step 2 on; only a published version counts.
        let found = versions.iter().find_map(|v| {
            let note = VersionNote::parse(v.description()?)?;
            (v.version() != Some(LATEST) && note.improvement_id == *improvement_id)
                .then_some((v, note))
        });
        let Some((version, note)) = found else {
            return Ok(None);
        };
        let config = VersionConfig::try_from(version)
            .map_err(|e| malformed(function, "ListVersionsByFunction", &e))?;
        let newest = versions
            .iter()
            .filter_map(|v| v.version().and_then(version_number))
            .max();
        let is_newest = newest <= version_number(&config.version);
        Ok(Some((config, note, is_newest)))
    }

    /// The function's reserved concurrency; none when unreserved.
    async fn reserved_concurrency(
        &self,
        function: &ComponentId,
    ) -> Result<Option<u32>, DeployError> {
        let out = self
            .client
            .get_function_concurrency()
            .function_name(function.as_str())
            .send()
            .await
            .map_err(|e| failure(function, "GetFunctionConcurrency", &e))?;
        out.reserved_concurrent_executions()
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    malformed(function, "GetFunctionConcurrency", "a negative reservation")
                })
            })
            .transpose()
    }

    /// Sets the function's reserved concurrency to `target` unless it is that already.
    async fn reserve(
        &self,
        function: &ComponentId,
        target: Option<u32>,
    ) -> Result<(), DeployError> {
        let current = self.reserved_concurrency(function).await?;
        if current == target {
            return Ok(());
        }
        match target {
            Some(n) => {
                let n = i32::try_from(n).map_err(|_| {
                    DeployError::Rejected(format!(
                        "reserved concurrency {n} for {function} is out of range"
                    ))
                })?;
                self.patiently(|| {
                    self.client
                        .put_function_concurrency()
                        .function_name(function.as_str())
                        .reserved_concurrent_executions(n)
                        .send()
                })
                .await
                .map_err(|e| failure(function, "PutFunctionConcurrency", &e))?;
            }
            None => {
                self.patiently(|| {
                    self.client
                        .delete_function_concurrency()
                        .function_name(function.as_str())
                        .send()
                })
                .await
                .map_err(|e| failure(function, "DeleteFunctionConcurrency", &e))?;
            }
        }
        info!(function = %function, ?current, ?target, "reserved concurrency changed");
        Ok(())
    }

    /// Sets `$LATEST`'s memory, timeout, environment and description to `target`'s and waits
    /// until Lambda has applied them; `$LATEST`'s configuration then.
    async fn update_latest(
        &self,
        function: &ComponentId,
        target: &VersionConfig,
    ) -> Result<GetFunctionConfigurationOutput, DeployError> {
        let out_of_range = |what: &str, value: u32| {
            DeployError::Rejected(format!("{what} {value} for {function} is out of range"))
        };
        let memory = i32::try_from(target.memory_mb)
            .map_err(|_| out_of_range("memory", target.memory_mb))?;
        let timeout = i32::try_from(target.timeout_seconds)
            .map_err(|_| out_of_range("timeout", target.timeout_seconds))?;
        // All variables, so the ones the target lacks are removed.
        let environment = Environment::builder()
            .set_variables(Some(
                target
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        self.patiently(|| {
            self.client
                .update_function_configuration()
                .function_name(function.as_str())
                .memory_size(memory)
                .timeout(timeout)
                .environment(environment.clone())
                .description(&target.description)
                .send()
        })
        .await
        .map_err(|e| failure(function, "UpdateFunctionConfiguration", &e))?;
        self.wait_until_updated(function).await
    }

    /// Polls `$LATEST` until its `LastUpdateStatus` is `Successful` (or absent); its
    /// configuration then.
    async fn wait_until_updated(
        &self,
        function: &ComponentId,
    ) -> Result<GetFunctionConfigurationOutput, DeployError> {
        let mut backoff = Backoff::new(self.pacing);
        loop {
            let config = self
                .client
                .get_function_configuration()
                .function_name(function.as_str())
                .send()
                .await
                .map_err(|e| failure(function, "GetFunctionConfiguration", &e))?;
            match config.last_update_status() {
                None | Some(LastUpdateStatus::Successful) => return Ok(config),
                Some(LastUpdateStatus::Failed) => {
                    return Err(DeployError::Rejected(format!(
                        "updating {function} failed ({}): {}",
                        config
                            .last_update_status_reason_code()
                            .map_or("no reason code", |c| c.as_str()),
                        config
                            .last_update_status_reason()
                            .unwrap_or("no reason given")
                    )));
                }
                Some(status) => {
                    debug!(
                        function = %function,
                        status = status.as_str(),
                        "waiting for the update"
                    );
                    if !backoff.pause().await {
                        return Err(DeployError::Unavailable(format!(
                            "{function}'s update is still {} after {} s",
                            status.as_str(),
                            backoff.elapsed().as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// Points the alias at `version`, with `canary` as its only additional version (none
    /// clears the routing); `description` replaces the alias's when given. Conditional on
    /// the revision `alias` was read at.
    async fn route(
        &self,
        function: &ComponentId,
        alias: &GetAliasOutput,
        version: &str,
        canary: Option<(&str, f64)>,
        description: Option<&str>,
    ) -> Result<(), DeployError> {
        let weights: HashMap<String, f64> =
            canary.map(|(v, w)| (v.to_owned(), w)).into_iter().collect();
        let routing = AliasRoutingConfiguration::builder()
            .set_additional_version_weights(Some(weights))
            .build();
        self.patiently(|| {
            self.client
                .update_alias()
                .function_name(function.as_str())
                .name(LIVE_ALIAS)
                .function_version(version)
                .routing_config(routing.clone())
                .set_description(description.map(str::to_owned))
                .set_revision_id(alias.revision_id().map(str::to_owned))
                .send()
        })
        .await
        .map_err(|e| failure(function, "UpdateAlias", &e))?;
        Ok(())
    }

    /// Runs `call` again, with backoff, while Lambda answers that another update is in
    /// progress; gives the last answer back once the pacing budget is spent.
    async fn patiently<T, E, F, Fut>(&self, mut call: F) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: Modeled,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let mut backoff = Backoff::new(self.pacing);
        loop {
            match call().await {
                Err(e) if e.as_service_error().is_some_and(Modeled::in_conflict) => {
                    debug!(error = %ErrorChain(&e), "another update is in progress");
                    if !backoff.pause().await {
                        return Err(e);
                    }
                }
                answer => return answer,
            }
        }
    }
}

/// Doubling pauses within a [`Pacing`] budget.
struct Backoff {
    pacing: Pacing,
    started: Instant,
    next: Duration,
}

impl Backoff {
    fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            started: Instant::now(),
            next: pacing.first_delay,
        }
    }

    /// Sleeps before the next try; false (and no sleep) once the budget would be exceeded.
    async fn pause(&mut self) -> bool {
        if self.started.elapsed() + self.next > self.pacing.budget {
            return false;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.pacing.max_delay);
        true
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What an operation's modeled errors say beyond [`is_transient`].
trait Modeled: ProvideErrorKind + std::error::Error + Send + Sync + 'static {
    /// `ResourceConflictException`: another update of the function is in progress.
    fn in_conflict(&self) -> bool {
        false
    }

    /// `PreconditionFailedException`: the revision changed since it was read.
    fn stale_revision(&self) -> bool {
        false
    }
}

impl Modeled for GetAliasError {}
impl Modeled for GetFunctionError {}
impl Modeled for GetFunctionConfigurationError {}
impl Modeled for GetFunctionConcurrencyError {}
impl Modeled for ListVersionsByFunctionError {}

impl Modeled for UpdateFunctionConfigurationError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
    fn stale_revision(&self) -> bool {
        self.is_precondition_failed_exception()
    }
}

impl Modeled for UpdateFunctionCodeError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
    fn stale_revision(&self) -> bool {
        self.is_precondition_failed_exception()
    }
}

impl Modeled for PublishVersionError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
    fn stale_revision(&self) -> bool {
        self.is_precondition_failed_exception()
    }
}

impl Modeled for UpdateAliasError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
    fn stale_revision(&self) -> bool {
        self.is_precondition_failed_exception()
    }
}

impl Modeled for PutFunctionConcurrencyError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
}

impl Modeled for DeleteFunctionConcurrencyError {
    fn in_conflict(&self) -> bool {
        self.is_resource_conflict_exception()
    }
}

/// `Unavailable` for throttling, 5xx, an update still in progress after the retries, and a
/// revision that changed under the call (a retry reads it again); `Rejected` for the rest
/// (`ResourceNotFoundException`, `InvalidParameterValueException`, access denied, …).
fn failure<E: Modeled>(
    function: &ComponentId,
    operation: &str,
    err: &SdkError<E, HttpResponse>,
) -> DeployError {
    let message = format!("{operation} on {function}: {}", ErrorChain(err));
    let retry_later = is_transient(err)
        || err
            .as_service_error()
            .is_some_and(|e| e.in_conflict() || e.stale_revision());
    if retry_later {
        debug!(
            function = %function,
            operation,
            error = %DisplayErrorContext(err),
            "Lambda call failed"
        );
        DeployError::Unavailable(message)
    } else {
        warn!(
            function = %function,
            operation,
            error = %DisplayErrorContext(err),
            "Lambda refused the call"
        );
        DeployError::Rejected(message)
    }
}

/// A response that lacks what the deployer reads.
fn malformed(function: &ComponentId, operation: &str, what: &str) -> DeployError {
    DeployError::Rejected(format!("{operation} on {function} answered with {what}"))
}

fn not_published_for(
    function: &ComponentId,
    version: &str,
    improvement_id: &ImprovementId,
) -> DeployError {
    DeployError::Rejected(format!(
        "the alias of {function} names version {version} for improvement {improvement_id}, but \
         that version was not published for it"
    ))
}

/// A reservation in words.
fn reservation(reserved: Option<u32>) -> String {
    reserved.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

fn other_settings(improvement_id: &ImprovementId, function: &ComponentId) -> DeployError {
    DeployError::Rejected(format!(
        "improvement {improvement_id} was deployed to {function} with other settings, code or \
         weight"
    ))
}

/// What a canary put on `$LATEST`, in words.
fn carried(code: bool) -> &'static str {
    if code {
        "settings and code"
    } else {
        "settings"
    }
}

/// The package paths a patch changes, creates or deletes.
fn patched_paths(release: &CodeRelease) -> Vec<String> {
    release.files.iter().map(|f| f.path.clone()).collect()
}

/// The alias's version, which a deploy keeps as the stable one.
fn stable_version(function: &ComponentId, alias: &GetAliasOutput) -> Result<String, DeployError> {
    alias
        .function_version()
        .map(str::to_owned)
        .ok_or_else(|| malformed(function, "GetAlias", "no FunctionVersion"))
}

/// The alias's additional version and its weight. Lambda allows one; were there more, the
/// lowest-numbered would be reported.
fn canary_of(alias: &GetAliasOutput) -> Option<(String, f64)> {
    alias
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
        .and_then(|weights| {
            weights
                .iter()
                .min_by_key(|(v, _)| (version_number(v), v.as_str()))
        })
        .map(|(v, w)| (v.clone(), *w))
}

fn version_number(version: &str) -> Option<u64> {
    version.parse().ok()
}

/// `at`, to the millisecond, so it reads back from a description unchanged.
fn to_the_millisecond(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_millisecond(at.millisecond()).unwrap_or(at)
}

/// The part of a version's configuration the deployer reads and writes.
#[derive(Debug, Clone, PartialEq)]
struct VersionConfig {
    /// A version number, or `$LATEST`.
    version: String,
    memory_mb: u32,
    timeout_seconds: u32,
    environment: BTreeMap<String, String>,
    description: String,
    /// The package hash; none for an output that omits it.
    code_sha256: Option<String>,
    /// The revision, which conditional updates name; none for an output that omits it.
    revision_id: Option<String>,
}

impl VersionConfig {
    fn read(
        version: Option<&str>,
        memory: Option<i32>,
        timeout: Option<i32>,
        environment: Option<&EnvironmentResponse>,
        description: Option<&str>,
        code_sha256: Option<&str>,
        revision_id: Option<&str>,
    ) -> Result<Self, String> {
        let count = |value: Option<i32>, name: &str| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("no valid {name}"))
        };
        Ok(Self {
            version: version.ok_or("no Version")?.to_owned(),
            memory_mb: count(memory, "MemorySize")?,
            timeout_seconds: count(timeout, "Timeout")?,
            environment: environment
                .and_then(EnvironmentResponse::variables)
                .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            description: description.unwrap_or_default().to_owned(),
            code_sha256: code_sha256.map(str::to_owned),
            revision_id: revision_id.map(str::to_owned),
        })
    }

    /// True when memory, timeout and environment are those of `settings`.
    fn runs(&self, settings: &LambdaSettings) -> bool {
        self.memory_mb == settings.memory_mb
            && self.timeout_seconds == settings.timeout_seconds
            && self.environment == settings.environment
    }

    /// True when everything but the version name is the same.
    fn same_as(&self, other: &Self) -> bool {
        self.memory_mb == other.memory_mb
            && self.timeout_seconds == other.timeout_seconds
            && self.environment == other.environment
            && self.description == other.description
    }

    fn settings(&self, reserved_concurrency: Option<u32>) -> LambdaSettings {
        LambdaSettings {
            memory_mb: self.memory_mb,
            timeout_seconds: self.timeout_seconds,
            reserved_concurrency,
            environment: self.environment.clone(),
        }
    }
}

/// Every Lambda output that carries a function configuration reads the same way.
macro_rules! version_config_from {
    ($($output:ty),* $(,)?) => {$(
        impl TryFrom<&$output> for VersionConfig {
            type Error = String;

            fn try_from(c: &$output) -> Result<Self, String> {
                Self::read(
                    c.version(),
                    c.memory_size(),
                    c.timeout(),
                    c.environment(),
                    c.description(),
                    c.code_sha256(),
                    c.revision_id(),
                )
            }
        }
    )*};
}

version_config_from!(
    GetFunctionConfigurationOutput,
    PublishVersionOutput,
    FunctionConfiguration,
);

/// What a canary version records in its description, once, at `PublishVersion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VersionNote {
    /// The improvement the version ships.
    #[serde(rename = "selfbuild")]
    improvement_id: ImprovementId,
    /// The version the alias pointed at when this one was cut.
    stable: String,
    /// The function's reserved concurrency before the deploy.
    reserved_before: Option<u32>,
    /// The reserved concurrency the deploy sets.
    reserved: Option<u32>,
    /// The `CodeSha256` of the patched package the version ships; none for a configuration
    /// change (and in notes written before code patches shipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

/// What the alias records in its description, in the call that starts routing to a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AliasNote {
    /// The improvement being shipped.
    #[serde(rename = "selfbuild")]
    improvement_id: ImprovementId,
    /// The canary version.
    canary: String,
    /// Its weight.
    weight: f64,
    /// When routing to it began.
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
}

/// A note as a description, refused when Lambda would not keep it whole.
fn describe(note: &impl Serialize, improvement_id: &ImprovementId) -> Result<String, DeployError> {
    let text = serde_json::to_string(note).map_err(|e| {
        DeployError::Rejected(format!("the note of improvement {improvement_id}: {e}"))
    })?;
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(DeployError::Rejected(format!(
            "improvement id {improvement_id} is too long to record in a Lambda description \
             ({MAX_DESCRIPTION} characters at most)"
        )));
    }
    Ok(text)
}

impl VersionNote {
    fn parse(description: &str) -> Option<Self> {
        serde_json::from_str(description).ok()
    }

    fn to_description(&self) -> Result<String, DeployError> {
        describe(self, &self.improvement_id)
    }
}

impl AliasNote {
    fn parse(description: Option<&str>) -> Option<Self> {
        serde_json::from_str(description?).ok()
    }

    fn to_description(&self) -> Result<String, DeployError> {
        describe(self, &self.improvement_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_error::test_support::service_error;
    use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
    use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationOutput;
    use aws_sdk_lambda::types::LastUpdateStatusReasonCode;
    use aws_sdk_lambda::types::error::{
        InvalidParameterValueException, ResourceConflictException, ResourceNotFoundException,
        TooManyRequestsException,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;
    use time::macros::datetime;

    /// Pauses short enough for unit tests, and a budget of a few of them.
    const FAST: Pacing = Pacing {
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        budget: Duration::from_millis(30),
    };

    fn function() -> ComponentId {
        ComponentId::parse("orders-api").unwrap()
    }

    fn deployer(client: Client) -> LambdaDeployer {
        LambdaDeployer {
            client,
            pacing: FAST,
            clock: Arc::new(SystemClock),
            packages: PackageFetcher::new(),
        }
    }

    /// A deployer with short pauses and a budget no loaded machine exhausts: for waits that
    /// must end in success.
    fn patient_deployer(client: Client) -> LambdaDeployer {
        LambdaDeployer {
            pacing: Pacing {
                budget: Duration::from_secs(60),
                ..FAST
            },
            ..deployer(client)
        }
    }

    fn target() -> VersionConfig {
        VersionConfig {
            code_sha256: None,
            revision_id: None,
            version: LATEST.to_owned(),
            memory_mb: 512,
            timeout_seconds: 10,
            environment: [("MODE".to_owned(), "fast".to_owned())].into(),
            description: "d".to_owned(),
        }
    }

    fn conflict() -> UpdateFunctionConfigurationError {
        UpdateFunctionConfigurationError::ResourceConflictException(
            ResourceConflictException::builder()
                .message("An update is in progress")
                .build(),
        )
    }

    fn status(status: LastUpdateStatus) -> GetFunctionConfigurationOutput {
        GetFunctionConfigurationOutput::builder()
            .last_update_status(status)
            .build()
    }

    #[test]
    fn notes_round_trip_and_fit_a_description_for_the_longest_improvement_ids() {
        // A cycle id has at most 80 characters; the improvement appends `-<rank>`.
        let id: ImprovementId = format!("{}-12", "c".repeat(80)).parse().unwrap();
        let version = VersionNote {
            improvement_id: id.clone(),
            stable: "12345".into(),
            reserved_before: None,
            reserved: Some(1000),
            // A CodeSha256 is base64 of 32 bytes: 44 characters.
            code: Some(rewrite::code_sha256(b"package")),
        };
        let text = version.to_description().unwrap();
        assert!(
            text.len() <= MAX_DESCRIPTION,
            "{} chars: {text}",
            text.len()
        );
        assert_eq!(VersionNote::parse(&text), Some(version));

        let alias = AliasNote {
            improvement_id: id,
            canary: "12346".into(),
            weight: 0.1,
            since: datetime!(2026-11-22 05:00:01.123 UTC),
        };
        let text = alias.to_description().unwrap();
        assert!(
            text.len() <= MAX_DESCRIPTION,
            "{} chars: {text}",
            text.len()
        );
        assert_eq!(AliasNote::parse(Some(&text)), Some(alias));

        assert_eq!(AliasNote::parse(Some("Managed by SAM")), None);
        assert_eq!(VersionNote::parse(""), None);
        let too_long = VersionNote {
            improvement_id: format!("{}-1", "x".repeat(78)).parse().unwrap(),
            stable: "9".repeat(MAX_DESCRIPTION),
            reserved_before: None,
            reserved: None,
            code: None,
        };
        assert!(matches!(
            too_long.to_description(),
            Err(DeployError::Rejected(m)) if m.contains("too long")
        ));
    }

    #[test]
    fn a_version_note_written_before_code_patches_still_reads() {
        let note = VersionNote::parse(
            r#"{"selfbuild":"i-1","stable":"3","reserved_before":null,"reserved":5}"#,
        )
        .unwrap();
        assert_eq!(note.code, None);
        assert_eq!(note.reserved, Some(5));
        assert!(!note.to_description().unwrap().contains("code"));
    }

    #[test]
    fn a_deployed_at_reads_back_from_its_description_unchanged() {
        let since = to_the_millisecond(datetime!(2026-11-22 05:00:00.123_456_789 UTC));
        assert_eq!(since.nanosecond() % 1_000_000, 0);
        let note = AliasNote {
            improvement_id: "i-1".parse().unwrap(),
            canary: "2".into(),
            weight: 0.1,
            since,
        };
        let back = AliasNote::parse(Some(&note.to_description().unwrap())).unwrap();
        assert_eq!(back.since, since);
    }

    #[test]
    fn conflicts_throttling_and_stale_revisions_are_unavailable() {
        let f = function();
        assert!(matches!(
            failure(
                &f,
                "UpdateFunctionConfiguration",
                &service_error(conflict(), 409)
            ),
            DeployError::Unavailable(_)
        ));
        let throttled =
            UpdateAliasError::TooManyRequestsException(TooManyRequestsException::builder().build());
        assert!(matches!(
            failure(&f, "UpdateAlias", &service_error(throttled, 429)),
            DeployError::Unavailable(_)
        ));
        let stale = UpdateAliasError::PreconditionFailedException(
            aws_sdk_lambda::types::error::PreconditionFailedException::builder().build(),
        );
        assert!(matches!(
            failure(&f, "UpdateAlias", &service_error(stale, 412)),
            DeployError::Unavailable(_)
        ));
        let internal =
            GetAliasError::generic(ErrorMetadata::builder().code("ServiceException").build());
        assert!(matches!(
            failure(&f, "GetAlias", &service_error(internal, 500)),
            DeployError::Unavailable(_)
        ));
    }

    #[test]
    fn missing_resources_bad_parameters_and_denials_are_rejected_naming_the_function() {
        let f = function();
        let missing = GetFunctionConfigurationError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Function not found")
                .build(),
        );
        let invalid = PublishVersionError::InvalidParameterValueException(
            InvalidParameterValueException::builder().build(),
        );
        let denied = PutFunctionConcurrencyError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .build(),
        );
        for err in [
            failure(&f, "GetFunctionConfiguration", &service_error(missing, 404)),
            failure(&f, "PublishVersion", &service_error(invalid, 400)),
            failure(&f, "PutFunctionConcurrency", &service_error(denied, 403)),
        ] {
            assert!(
                matches!(&err, DeployError::Rejected(m) if m.contains("orders-api")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn the_lowest_additional_version_is_the_canary() {
        let alias = |weights: &[(&str, f64)]| {
            let mut routing = AliasRoutingConfiguration::builder();
            for (v, w) in weights {
                routing = routing.additional_version_weights(*v, *w);
            }
            GetAliasOutput::builder()
                .function_version("3")
                .routing_config(routing.build())
                .build()
        };
        assert_eq!(canary_of(&alias(&[])), None);
        assert_eq!(canary_of(&alias(&[("4", 0.1)])), Some(("4".into(), 0.1)));
        assert_eq!(
            canary_of(&alias(&[("10", 0.2), ("9", 0.1)])),
            Some(("9".into(), 0.1))
        );
        assert_eq!(canary_of(&GetAliasOutput::builder().build()), None);
    }

    #[tokio::test]
    async fn an_update_waits_out_conflicts_and_an_update_in_progress() {
        // GIVEN Lambda is busy twice, then the update runs for two polls
        let update = mock!(Client::update_function_configuration)
            .sequence()
            .error(conflict)
            .times(2)
            .output(|| UpdateFunctionConfigurationOutput::builder().build())
            .build();
        let poll = mock!(Client::get_function_configuration)
            .sequence()
            .output(|| status(LastUpdateStatus::InProgress))
            .times(2)
            .output(|| status(LastUpdateStatus::Successful))
            .build();
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&update, &poll]);
        // WHEN $LATEST is updated THEN it succeeds once the update has
        patient_deployer(client)
            .update_latest(&function(), &target())
            .await
            .unwrap();
        assert_eq!((update.num_calls(), poll.num_calls()), (3, 3));
    }

    #[tokio::test]
    async fn a_conflict_that_outlasts_the_budget_is_unavailable() {
        let update = mock!(Client::update_function_configuration).then_error(conflict);
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&update]);
        let err = deployer(client)
            .update_latest(&function(), &target())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeployError::Unavailable(m)
                if m.contains("UpdateFunctionConfiguration")),
            "{err:?}"
        );
        assert!(update.num_calls() > 1);
    }

    #[tokio::test]
    async fn an_update_that_never_finishes_is_unavailable_and_a_failed_one_rejected() {
        let update = mock!(Client::update_function_configuration)
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let stuck = mock!(Client::get_function_configuration)
            .then_output(|| status(LastUpdateStatus::InProgress));
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&update, &stuck]);
        let err = deployer(client)
            .update_latest(&function(), &target())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeployError::Unavailable(m) if m.contains("InProgress")),
            "{err:?}"
        );

        let failed = mock!(Client::get_function_configuration).then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .last_update_status(LastUpdateStatus::Failed)
                .last_update_status_reason_code(LastUpdateStatusReasonCode::SubnetOutOfIpAddresses)
                .last_update_status_reason("no free IP addresses")
                .build()
        });
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&update, &failed]);
        let err = deployer(client)
            .update_latest(&function(), &target())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeployError::Rejected(m)
                if m.contains("SubnetOutOfIPAddresses") && m.contains("no free IP addresses")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_alias_is_rejected_naming_it() {
        let missing = mock!(Client::get_alias).then_error(|| {
            GetAliasError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Cannot find alias arn")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&missing]);
        let err = deployer(client)
            .function_state(&function())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeployError::Rejected(m)
                if m.contains("orders-api") && m.contains("no alias `live`")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn weights_outside_zero_to_one_are_rejected_before_any_call() {
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, []);
        let settings = target().settings(None);
        for weight in [0.0, -0.1, 1.5, f64::NAN] {
            let err = deployer(client.clone())
                .deploy_canary(
                    &"i-1".parse().unwrap(),
                    &function(),
                    &selfbuild_core::change::DeploySpec::Config(settings.clone()),
                    weight,
                )
                .await
                .unwrap_err();
            assert!(matches!(err, DeployError::Rejected(_)), "{weight}: {err:?}");
        }
    }

    fn latest_with(code: &str, description: &str) -> GetFunctionConfigurationOutput {
        GetFunctionConfigurationOutput::builder()
            .version(LATEST)
            .memory_size(512)
            .timeout(10)
            .description(description)
            .code_sha256(code)
            .revision_id("rev-1")
            .last_update_status(LastUpdateStatus::Successful)
            .build()
    }

    fn note() -> VersionNote {
        VersionNote {
            improvement_id: "i-1".parse().unwrap(),
            stable: "1".into(),
            reserved_before: None,
            reserved: None,
            code: None,
        }
    }

    fn stable_config() -> VersionConfig {
        VersionConfig {
            code_sha256: Some("stable-code".into()),
            version: "1".into(),
            ..target()
        }
    }

    #[tokio::test]
    async fn a_code_upload_names_the_revision_read_and_a_changed_revision_is_unavailable() {
        // GIVEN $LATEST changed after its revision was read
        let stale = mock!(Client::update_function_code)
            .match_requests(|r| r.revision_id() == Some("rev-1") && r.zip_file().is_some())
            .then_error(|| {
                UpdateFunctionCodeError::PreconditionFailedException(
                    aws_sdk_lambda::types::error::PreconditionFailedException::builder()
                        .message("The Revision Id provided does not match the latest Revision Id")
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&stale]);
        // WHEN the patched package is uploaded conditionally on that revision
        let err = deployer(client)
            .update_latest_code(&function(), b"zip", Some("rev-1"))
            .await
            .unwrap_err();
        // THEN nothing is overwritten and the error says why, as worth retrying
        assert_eq!(stale.num_calls(), 1);
        assert!(
            matches!(&err, DeployError::Unavailable(m)
                if m.contains("changed since it was read") && m.contains("rev-1")
                    && m.contains("not overwritten")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_code_upload_waits_until_lambda_has_applied_it() {
        let upload = mock!(Client::update_function_code)
            .sequence()
            .error(|| {
                UpdateFunctionCodeError::ResourceConflictException(
                    ResourceConflictException::builder().build(),
                )
            })
            .output(|| {
                aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeOutput::builder()
                    .build()
            })
            .build();
        let poll = mock!(Client::get_function_configuration)
            .sequence()
            .output(|| status(LastUpdateStatus::InProgress))
            .output(|| latest_with("new-code", "d"))
            .build();
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&upload, &poll]);
        let latest = patient_deployer(client)
            .update_latest_code(&function(), b"zip", None)
            .await
            .unwrap();
        assert_eq!(latest.code_sha256.as_deref(), Some("new-code"));
        assert_eq!((upload.num_calls(), poll.num_calls()), (2, 2));
    }

    #[tokio::test]
    async fn a_configuration_change_is_published_only_with_the_stable_code() {
        let description = note().to_description().unwrap();
        let update = mock!(Client::update_function_configuration)
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let poll = mock!(Client::get_function_configuration)
            .then_output(move || latest_with("stable-code", &description));
        let description = note().to_description().unwrap();
        let publish = mock!(Client::publish_version)
            .match_requests(|r| r.code_sha256() == Some("stable-code"))
            .then_output(move || {
                PublishVersionOutput::builder()
                    .version("2")
                    .memory_size(512)
                    .timeout(10)
                    .environment(
                        EnvironmentResponse::builder()
                            .variables("MODE", "fast")
                            .build(),
                    )
                    .description(&description)
                    .code_sha256("stable-code")
                    .build()
            });
        let client = mock_client!(
            aws_sdk_lambda,
            RuleMode::MatchAny,
            [&update, &poll, &publish]
        );
        let settings = target().settings(None);
        let published = deployer(client)
            .publish_canary(&function(), &settings, &note(), &stable_config(), None)
            .await
            .unwrap();
        assert_eq!(published.version, "2");
        assert_eq!(publish.num_calls(), 1);
    }

    #[tokio::test]
    async fn stray_code_on_latest_is_never_published_as_a_configuration_change() {
        let description = note().to_description().unwrap();
        let update = mock!(Client::update_function_configuration)
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let poll = mock!(Client::get_function_configuration)
            .then_output(move || latest_with("leftover-code", &description));
        let publish =
            mock!(Client::publish_version).then_output(|| PublishVersionOutput::builder().build());
        let client = mock_client!(
            aws_sdk_lambda,
            RuleMode::MatchAny,
            [&update, &poll, &publish]
        );
        let err = deployer(client)
            .publish_canary(
                &function(),
                &target().settings(None),
                &note(),
                &stable_config(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeployError::Rejected(m)
                if m.contains("leftover-code") && m.contains("stable-code")),
            "{err:?}"
        );
        assert_eq!(publish.num_calls(), 0);
    }
}

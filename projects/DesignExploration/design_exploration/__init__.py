"""
Machine-driven design exploration: new AttoNets from a human prototype and requirements.

A person fixes the network-level prototype (:mod:`.space`; a search may open its depths
and, for a detector, the FPN's width and levels, :mod:`.neck`) and the requirements
(:mod:`.requirements`: accuracy floor, parameter, mult-add and latency budgets, as numbers
or relative to peer models, :mod:`.peers`; and the objective); the
:class:`DesignExplorer` (:mod:`.explorer`, settings in :mod:`.settings`) searches the
module cells with successive generators (:mod:`.generator`), each candidate inheriting
weights from a parent (:mod:`.inherit`) and trained briefly on the task
(:mod:`.evaluate`; latency in the engine the user names, :mod:`.latency`), to maximise
NetScore or the latency objective (:mod:`.objective`); the search state is typed
records (:mod:`.records`) saved in the search's folder (:mod:`.folder`); :mod:`.family`
picks and retrains the family; :mod:`.report` writes the family's table and plot.
``projects/DesignExploration/explore_design.py`` runs it.
"""

from .evaluate import (
    CandidateEvaluator,
    CandidateResult,
    ClassificationEvaluator,
    ClassificationSearchConfig,
    DetectionEvaluator,
    DetectionSearchConfig,
)
from .explorer import DesignExplorer
from .family import FamilyMember, derive_family, retrain_member
from .folder import STATE_FILE, SearchFolder, load_state
from .generator import CellGenerator, GeneratorSettings
from .inherit import (
    CLASSIFIER_LAYOUT,
    DETECTOR_FPN_LAYOUT,
    AttoNetLayout,
    channel_plans,
    inherit_state_dict,
    inherit_weights,
)
from .latency import detector_latency_ms, fixed_workload_detector
from .neck import NECK_LEVEL_CHOICES, NeckGenome, apply_neck, neck_of
from .objective import (
    OBJECTIVES,
    candidate_netscore,
    latency_score,
    measure_latency_ms,
    objective_score,
    ranking_key,
)
from .peers import PEER_CONFIGS, PEER_NAMES, PeerRecord, peer_config_file
from .records import (
    STATE_VERSION,
    CandidateRecord,
    Figures,
    GeneratorRecord,
    RetrainedRecord,
    SearchState,
)
from .report import (
    family_summary,
    format_family_table,
    latency_front,
    plot_family,
    write_report,
)
from .requirements import DesignRequirements, PeerReference, load_requirements, parse_count
from .settings import (
    LATENCY_ENGINES,
    ExplorerSettings,
    LatencySettings,
    SearchBudget,
    parse_budget,
)
from .space import (
    MULTIPLIER_CHOICES,
    CellGenome,
    genome_distance,
    get_prototype,
    uniform_prototype,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]

import {
  CaptureReservationDto,
  GrantCreditsDto,
  RefundCharmRunDto,
  ReserveCreditsDto,
} from '../http/dto/credits.dto';
import { IsLedgerId } from '../http/validators';

/** NATS requests carry in the body what HTTP carries in the path. */
export class RefundRequest extends RefundCharmRunDto {
  @IsLedgerId()
  organizationId!: string;

  @IsLedgerId()
  runId!: string;
}

export class ReserveRequest extends ReserveCreditsDto {
  @IsLedgerId({ optional: true })
  organizationId?: string;
}

export class CaptureRequest extends CaptureReservationDto {
  @IsLedgerId()
  organizationId!: string;

  @IsLedgerId()
  reservationId!: string;
}

export class ReleaseRequest {
  @IsLedgerId()
  organizationId!: string;

  @IsLedgerId()
  reservationId!: string;
}

export class GrantRequest extends GrantCreditsDto {
  @IsLedgerId()
  organizationId!: string;
}

export class BalanceRequest {
  @IsLedgerId()
  organizationId!: string;
}
